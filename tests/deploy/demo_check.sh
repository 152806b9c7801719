#!/usr/bin/env bash
# Runs `deploy/demo.sh --check` the way `make demo` would, then makes sure it left no daemon
# behind, QEMU included. Exit 77 (skipped) only where no Mortise engine can run guests.
set -euo pipefail
source_dir="$1"
build_dir="$2"
if ! "$build_dir/bin/mortise" engines; then
  echo "no Mortise engine can run guests here; skipping"
  exit 77
fi
cd "$source_dir"
processes="$build_dir/bin/(tenon-controller|tenon-agent|mortised|mortise-vmm)|qemu-system-x86_64 .*-name tenon"
before=$(pgrep -c -f "$processes" || true)
bash deploy/demo.sh "$build_dir" --check --timeout 60
after=$(pgrep -c -f "$processes" || true)
if [[ "$after" != "$before" ]]; then
  echo "demo left processes behind:"
  pgrep -a -f "$processes"
  exit 1
fi
