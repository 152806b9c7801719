#!/usr/bin/env bash
# Runs `deploy/demo.sh --check` the way `make demo` would, then makes sure it left no daemon
# behind. Exit 77 (skipped) without a usable /dev/kvm.
set -euo pipefail
source_dir="$1"
build_dir="$2"
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
  echo "/dev/kvm is not usable here; the demo needs KVM guests; skipping"
  exit 77
fi
cd "$source_dir"
before=$(pgrep -c -f "$build_dir/bin/(tenon-controller|tenon-agent|mortised)" || true)
bash deploy/demo.sh "$build_dir" --check --timeout 60
after=$(pgrep -c -f "$build_dir/bin/(tenon-controller|tenon-agent|mortised)" || true)
if [[ "$after" != "$before" ]]; then
  echo "demo left processes behind:"
  pgrep -a -f "$build_dir/bin/(tenon-controller|tenon-agent|mortised)"
  exit 1
fi
