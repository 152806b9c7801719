#!/usr/bin/env bash
# `make demo`: the fleet loop on this machine. Starts tenon-controller (SQLite in a temporary
# directory), mortised and tenon-agent (device edge-1), applies deploy/examples/fleet.yaml with
# tenonctl, and shows the instances running under Mortise with their live latency. Mortise picks
# its engine: KVM where /dev/kvm works, else QEMU (`mortise engines` says which and why).
#
#   deploy/demo.sh [BUILD_DIR] [--check] [--timeout SECONDS] [--keep]
#
# Interactive: refreshes the instance table every 2 s until Ctrl-C, then stops everything.
# --check: non-interactive; exits 0 once every example instance is Running with telemetry
# flowing, or 1 with the reason, within --timeout seconds (60). Either way no process is left.
set -euo pipefail

build_dir=build
check=0
timeout=60
keep=0
while (($#)); do
  case "$1" in
    --check) check=1 ;;
    --timeout) timeout="$2"; shift ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "demo: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) build_dir="$1" ;;
  esac
  shift
done

bin="$build_dir/bin"
for program in tenon-controller tenon-agent mortised mortise tenonctl jq; do
  if [[ ! -x "$bin/$program" ]] && ! command -v "$program" >/dev/null; then
    echo "demo: $program is missing; run 'make build' (jq: deploy/install-deps.sh)" >&2
    exit 1
  fi
done
if ! engines=$("$bin/mortise" engines 2>&1); then
  echo "demo: no Mortise engine can run Tenon instances here (deploy/install-deps.sh installs" \
    "QEMU):" >&2
  echo "$engines" >&2
  exit 1
fi
echo "demo: Mortise engines on this host:"
echo "$engines" | sed 's/^/  /'

work=$(mktemp -d "${TMPDIR:-/tmp}/tenon-demo-XXXXXX")
pids=()
stop_all() {
  local status=$?
  trap - EXIT INT TERM
  # Agent first (its instances keep running), then mortised (destroys them), then the controller.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if ((keep)); then echo "demo: logs and state kept in $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

wait_for_file() {  # path, what, pid
  for _ in $(seq 100); do
    [[ -e "$1" ]] && return 0
    if ! kill -0 "$3" 2>/dev/null; then
      echo "demo: $2 exited early; its log:" >&2; cat "$work/$2.log" >&2; return 1
    fi
    sleep 0.1
  done
  echo "demo: $2 did not become ready within 10 s; its log:" >&2; cat "$work/$2.log" >&2
  return 1
}

echo "demo: state and logs in $work"
"$bin/tenon-controller" --data-dir "$work/controller" --listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:0 --ready-file "$work/controller.json" --telemetry-interval 1s \
  >"$work/tenon-controller.log" 2>&1 &
pids+=($!)
wait_for_file "$work/controller.json" tenon-controller "${pids[-1]}"
grpc_address=$(jq -r .grpc_address "$work/controller.json")
http_address=$(jq -r .http_address "$work/controller.json")
cat >"$work/tenonctl.yaml" <<CONFIG
server: $grpc_address
token_file: $work/controller/operator-token
CONFIG
export TENONCTL_CONFIG="$work/tenonctl.yaml"
tenonctl() { "$bin/tenonctl" "$@"; }
echo "demo: controller on $grpc_address (gRPC), http://$http_address (REST, /metrics)"

"$bin/mortised" --socket "$work/mortised.sock" --state-dir "$work/mortise" \
  >"$work/mortised.log" 2>&1 &
pids+=($!)
wait_for_file "$work/mortised.sock" mortised "${pids[-1]}"

tenonctl apply -f deploy/examples/fleet.yaml
tenonctl token create --device edge-1 -o json | jq -r .token >"$work/bootstrap-token"
"$bin/tenon-agent" --controller "$grpc_address" --device-name edge-1 \
  --bootstrap-token-file "$work/bootstrap-token" --state-dir "$work/agent" \
  --mortised-socket "$work/mortised.sock" --telemetry-interval 1s >"$work/tenon-agent.log" 2>&1 &
pids+=($!)
echo "demo: agent for device edge-1 started; waiting for the instances"

expected=$(tenonctl get deployments -o json | jq '.items | length')
ready() {  # every expected instance Running, each with jobs counted
  tenonctl get instances -o json 2>/dev/null | jq -e --argjson n "$expected" '
    [.items[] | select(.status.observed_state == "INSTANCE_STATE_RUNNING")
              | select(([.status.latency.tasks[]?.jobs | tonumber] | add // 0) > 0)]
    | length == $n' >/dev/null
}

deadline=$((SECONDS + timeout))
until ready; do
  if ((SECONDS >= deadline)); then
    echo "demo: not every instance was Running with telemetry within ${timeout}s:" >&2
    tenonctl get instances -o wide >&2 || true
    echo "--- agent log (last lines)" >&2; tail -n 15 "$work/tenon-agent.log" >&2
    exit 1
  fi
  if ! kill -0 "${pids[-1]}" 2>/dev/null; then
    echo "demo: the agent exited:" >&2; tail -n 15 "$work/tenon-agent.log" >&2; exit 1
  fi
  sleep 1
done
echo "demo: every instance is Running with telemetry flowing"
tenonctl get instances -o wide
if ((check)); then
  curl -fsS "http://$http_address/metrics" | grep -c '^tenon_instance_task_jobs_total' \
    | xargs -I{} echo "demo: /metrics exports {} task series"
  exit 0
fi
echo "demo: live latency below, refreshed every 2 s; Ctrl-C stops everything"
while true; do
  sleep 2
  clear 2>/dev/null || true
  date -u +"%H:%M:%S UTC"
  tenonctl get instances -o wide
  for instance in $(tenonctl get instances -o json | jq -r '.items[].metadata.name'); do
    echo
    tenonctl describe instance "$instance" | sed -n '/Latency/,$p'
  done
done
