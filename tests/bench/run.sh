#!/usr/bin/env bash
# `make bench`: runs every benchmark, writes one JSON file per benchmark run under
# <build>/bench/, and prints a short table for each.
set -euo pipefail
build_dir="${1:-build}"
runs="${BENCH_RUNS:-200}"
out_dir="$build_dir/bench"
mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
command="make bench BENCH_RUNS=$runs"
failed=()
skipped=()
# Runs one benchmark; 77 means it cannot run here (skipped), anything else non-zero a failure.
bench() {
  local name="$1"
  shift
  local status=0
  "$@" || status=$?
  case "$status" in
    0) ;;
    77) skipped+=("$name") ;;
    *) failed+=("$name") ;;
  esac
}

bench B2/B3 "$build_dir/bin/boot_bench" --mortise "$build_dir/bin/mortise" \
  --image-dir "$build_dir/images" --floor "$build_dir/bin/kvm_floor" \
  --runs "$runs" --output "$out_dir/boot-$stamp.json" --commit "$commit" --command "$command"

# B1: the deterministic icount comparison with Linux PREEMPT_RT (QEMU), and on KVM the host one.
bench B1 "$build_dir/bin/latency_bench" --mortise "$build_dir/bin/mortise" \
  --image-dir "$build_dir/images" --initramfs-script tests/bench/rt_initramfs.sh \
  --releases "${BENCH_RELEASES:-10000}" \
  --seconds "${BENCH_LATENCY_SECONDS:-60}" --output "$out_dir/latency-$stamp.json" \
  --commit "$commit" --command "$command"

bench B8 "$build_dir/bin/compose_bench" --cold-runs "${BENCH_COMPOSE_COLD_RUNS:-20}" \
  --devices "${BENCH_COMPOSE_DEVICES:-10000}" --output "$out_dir/compose-$stamp.json" \
  --commit "$commit" --command "$command"

bench B4/B6 "$build_dir/bin/daemon_bench" --mortised "$build_dir/bin/mortised" --image-dir "$build_dir/images" \
  --iterations "$runs" --density-target "${BENCH_DENSITY:-1000}" \
  --output "$out_dir/daemon-$stamp.json" --commit "$commit" --command "$command BENCH_DENSITY=${BENCH_DENSITY:-1000}"

bench B7 "$build_dir/bin/fleet_bench" --controller "$build_dir/bin/tenon-controller" \
  --agents "${BENCH_FLEET_SIZES:-100,1000,10000}" --output "$out_dir/fleet-$stamp.json" \
  --commit "$commit" --command "$command BENCH_FLEET_SIZES=${BENCH_FLEET_SIZES:-100,1000,10000}"

# B5: BENCH_IVC_MILLION=1 adds a million messages streamed between the guests (minutes under
# nested KVM).
ivc_million=()
if [ "${BENCH_IVC_MILLION:-0}" = 1 ]; then ivc_million=(--million); fi
bench B5 "$build_dir/bin/ivc_bench" --image-dir "$build_dir/images/kvm" "${ivc_million[@]}" \
  --output "$out_dir/ivc-$stamp.json" --commit "$commit" \
  --command "$command BENCH_IVC_MILLION=${BENCH_IVC_MILLION:-0}"

bench B4-migration bash tests/bench/migration_bench.sh "$build_dir" "$out_dir/migration-$stamp.json" \
  "${BENCH_MIGRATIONS:-20}" "$commit" "$command BENCH_MIGRATIONS=${BENCH_MIGRATIONS:-20}"

echo "bench: results in $out_dir; skipped here: ${skipped[*]:-none}; failed: ${failed[*]:-none}"
((${#failed[@]} == 0))
