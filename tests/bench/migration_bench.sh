#!/usr/bin/env bash
# B4, migration: the real fleet on this machine (tenon-controller, two mortised, two agents, as
# two devices) moves a running control-loop instance back and forth with `tenonctl migrate` and
# records each report: downtime (pause at the source to running at the target), snapshot,
# transfer and restore-and-resume times, snapshot size. Writes one JSON file; never fails on a
# timing. Both devices run the engine `mortise engines` picks here (kvm where it runs, else
# qemu), named in the JSON; exit 77 (skipped) with the reason where no engine runs, exit 1 when
# a migration fails.
#   tests/bench/migration_bench.sh BUILD_DIR OUTPUT [ROUNDS] [COMMIT] [COMMAND]
set -euo pipefail
build_dir="$1"
output="$2"
rounds="${3:-10}"
commit="${4:-unknown}"
command="${5:-tests/bench/migration_bench.sh}"
bin="$build_dir/bin"
kvm=absent
if [[ -r /dev/kvm && -w /dev/kvm ]]; then
  if [[ -e /sys/module/kvm_pvm ]]; then kvm="paravirtual (kvm_pvm: guest code runs in an instruction emulator)"
  elif grep -qwE 'vmx|svm' /proc/cpuinfo; then kvm="hardware virtualization"
  else kvm="present without vmx/svm"; fi
fi
machine=$(jq -n --argjson cores "$(nproc)" --arg kvm "$kvm" \
  --argjson guest "$(grep -qw hypervisor /proc/cpuinfo && echo true || echo false)" \
  '{cores: $cores, host_is_a_guest: $guest, kvm: $kvm}')
report() {  # extra JSON fields
  jq -n --arg commit "$commit" --arg command "$command" --argjson machine "$machine" \
    --argjson extra "$1" '{benchmarks: ["B4"], commit: $commit, command: $command,
                           machine: $machine} + $extra' >"$output"
}
engines=$("$build_dir/bin/mortise" engines -o json 2>/dev/null || true)
[[ -n "$engines" ]] || engines='{}'
engine=$(jq -r '.auto // empty' <<<"$engines")
if [[ -z "$engine" ]]; then
  why=$(jq -r '[.kvm.problem, .qemu.problem] | map(select(. != null and . != "")) | join("; ")
               | if . == "" then "mortise engines failed" else . end' <<<"$engines")
  report "$(jq -n --arg why "$why" '{skipped: ("no engine can run guests here: " + $why)}')"
  echo "B4 migration skipped: no engine can run guests here"
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tenon-b4-migration-XXXXXX")
pids=()
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
wait_for() { for _ in $(seq 200); do [[ -e "$1" ]] && return 0; sleep 0.1; done; return 1; }

"$bin/tenon-controller" --data-dir "$work/controller" --listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:0 --ready-file "$work/ready.json" >"$work/controller.log" 2>&1 &
pids+=($!)
wait_for "$work/ready.json"
grpc=$(jq -r .grpc_address "$work/ready.json")
printf 'server: %s\ntoken_file: %s\n' "$grpc" "$work/controller/operator-token" >"$work/ctl.yaml"
tenonctl() { "$bin/tenonctl" --config "$work/ctl.yaml" "$@"; }
for device in a b; do
  "$bin/mortised" --engine "$engine" --socket "$work/mortised-$device.sock" \
    --state-dir "$work/mortise-$device" >"$work/mortised-$device.log" 2>&1 &
  pids+=($!)
  wait_for "$work/mortised-$device.sock"
done
cat >"$work/fleet.yaml" <<'YAML'
apiVersion: tenon/v1
kind: Device
metadata: {name: edge-a, labels: {role: a}}
---
apiVersion: tenon/v1
kind: Device
metadata: {name: edge-b, labels: {role: b}}
---
apiVersion: tenon/v1
kind: App
metadata: {name: control-loop}
spec: {program: control-loop}
---
apiVersion: tenon/v1
kind: Deployment
metadata: {name: control}
spec:
  app: control-loop
  selector: {match_labels: {role: a}}
YAML
tenonctl apply -f "$work/fleet.yaml" >/dev/null
for device in a b; do
  tenonctl token create --device "edge-$device" >"$work/edge-$device.token" 2>/dev/null
  "$bin/tenon-agent" --controller "$grpc" --device-name "edge-$device" \
    --bootstrap-token-file "$work/edge-$device.token" --state-dir "$work/agent-$device" \
    --mortised-socket "$work/mortised-$device.sock" --max-backoff 1s \
    >"$work/agent-$device.log" 2>&1 &
  pids+=($!)
done
running() {
  tenonctl get instances -o json | jq -e '.items | length == 1 and
    (.[0].status.observed_state == "INSTANCE_STATE_RUNNING")' >/dev/null 2>&1
}
for _ in $(seq 600); do running && break; sleep 0.1; done
running || { report '{"error": "the instance never ran"}'; exit 1; }
instance=$(tenonctl get instances -o json | jq -r '.items[0].metadata.name')

samples="[]"
targets=(edge-b edge-a)
for ((round = 0; round < rounds; round++)); do
  target=${targets[$((round % 2))]}
  if result=$(tenonctl migrate "$instance" --to "$target" -o json 2>"$work/migrate.err"); then
    samples=$(jq -c --argjson r "$result" '. + [$r.report]' <<<"$samples")
  else
    samples=$(jq -c --arg e "$(cat "$work/migrate.err")" '. + [{error: $e}]' <<<"$samples")
  fi
  for _ in $(seq 300); do running && break; sleep 0.1; done
done
# Durations arrive as "0.012345s": summarise in milliseconds.
summary=$(jq -c '
  def ms: if . == null then null else (rtrimstr("s") | tonumber * 1000) end;
  def stats: sort | {count: length, min: .[0], p50: .[(length / 2 | floor)],
                     max: .[-1], mean: (add / length)};
  [.[] | select(.error == null)] as $ok
  | {rounds: length, failed: (length - ($ok | length)),
     downtime_ms: ($ok | map(.downtime | ms) | stats),
     snapshot_ms: ($ok | map(.snapshot_time | ms) | stats),
     transfer_ms: ($ok | map(.transfer_time | ms) | stats),
     restore_and_resume_ms: ($ok | map(.restore_time | ms) | stats),
     snapshot_bytes: ($ok | map(.snapshot_bytes | tonumber) | max)}' <<<"$samples")
report "$(jq -c --argjson s "$summary" --argjson raw "$samples" --arg engine "$engine" \
  '{engine: $engine, migration: $s, samples: $raw}' <<<'{}')"
jq -c .migration "$output"
failed=$(jq -r .migration.failed "$output")
if [[ "$failed" != 0 ]]; then
  echo "B4 migration: $failed of $rounds migrations failed" >&2
  exit 1
fi
