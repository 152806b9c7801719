#!/usr/bin/env bash
# B4, migration: the real fleet on this machine (tenon-controller, two mortised, two agents, as
# two devices) moves a running control-loop instance back and forth with `tenonctl migrate` and
# records each report: downtime (pause at the source to running at the target), snapshot,
# transfer and restore-and-resume times, snapshot size. Writes one JSON file; never fails on a
# timing. Exit 0 with a reason in the JSON where /dev/kvm is not usable.
#   tests/bench/migration_bench.sh BUILD_DIR OUTPUT [ROUNDS] [COMMIT] [COMMAND]
set -euo pipefail
build_dir="$1"
output="$2"
rounds="${3:-10}"
commit="${4:-unknown}"
command="${5:-tests/bench/migration_bench.sh}"
bin="$build_dir/bin"
machine=$(jq -n --argjson cores "$(nproc)" \
  --arg nested "$(cat /sys/module/kvm_intel/parameters/nested /sys/module/kvm_amd/parameters/nested 2>/dev/null | head -1)" \
  '{cores: $cores, kvm_nested: ($nested == "Y" or $nested == "1")}')
report() {  # extra JSON fields
  jq -n --arg commit "$commit" --arg command "$command" --argjson machine "$machine" \
    --argjson extra "$1" '{benchmarks: ["B4"], commit: $commit, command: $command,
                           machine: $machine} + $extra' >"$output"
}
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
  report '{"skipped": "/dev/kvm is not usable here"}'
  exit 0
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
  "$bin/mortised" --socket "$work/mortised-$device.sock" --state-dir "$work/mortise-$device" \
    >"$work/mortised-$device.log" 2>&1 &
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
report "$(jq -c --argjson s "$summary" --argjson raw "$samples" \
  '{migration: $s, samples: $raw}' <<<'{}')"
jq -c .migration "$output"
