#!/usr/bin/env bash
# The main job on the embedded defaults. Until the fleet loop lands (controller, agent, mortised),
# the demo boots the example Tenon instance locally under Mortise on KVM.
set -euo pipefail
build_dir="${1:-build}"
mortise="$build_dir/bin/mortise"
image="$build_dir/images/hello.elf"

if [[ ! -e /dev/kvm ]]; then
  echo "demo: /dev/kvm is absent on this host; Mortise needs KVM to boot Tenon instances." >&2
  exit 1
fi
echo "demo: booting $image under Mortise (256 KiB guest, 5 s limit)"
"$mortise" run "$image" --memory 256K --duration 5s
