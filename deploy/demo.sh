#!/usr/bin/env bash
# The main job on the embedded defaults. Until the fleet loop lands (controller, agent, mortised),
# the demo runs the example Tenon instances locally under Mortise on KVM: hello, then the
# control-loop app for a few seconds with its live latency telemetry.
set -euo pipefail
build_dir="${1:-build}"
mortise="$build_dir/bin/mortise"
images="$build_dir/images"
seconds="${DEMO_SECONDS:-5}"

if [[ ! -e /dev/kvm ]]; then
  echo "demo: /dev/kvm is absent on this host; Mortise needs KVM to boot Tenon instances." >&2
  exit 1
fi
echo "demo: booting $images/hello.elf under Mortise (128 KiB guest)"
"$mortise" run "$images/hello.elf" --memory 128K --duration 5s
echo
echo "demo: running control-loop (PID at 1 kHz, supervisor 100 Hz, logger 10 Hz) for ${seconds}s"
echo "      on a real-time core, telemetry read live from the guest every second"
"$mortise" run "$images/control-loop.elf" --memory 256K --realtime --app-run "${seconds}s" \
  --report-every 1s
