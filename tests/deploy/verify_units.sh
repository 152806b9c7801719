#!/usr/bin/env bash
# Checks deploy/systemd/*.service with systemd's own verifier, the binaries pointed at this
# build's. Exit 77 (skipped) where systemd-analyze is not installed.
set -euo pipefail
source_dir="$1"
bin_dir="$2"
if ! command -v systemd-analyze >/dev/null; then
  echo "systemd-analyze is not installed; skipping"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for unit in "$source_dir"/deploy/systemd/*.service; do
  sed "s#/usr/local/bin/#$bin_dir/#g" "$unit" >"$work/$(basename "$unit")"
done
output=$(cd "$work" && systemd-analyze verify ./*.service 2>&1) || {
  echo "$output"
  exit 1
}
# verify reports some problems as warnings only; none are acceptable here.
if [[ -n "$output" ]]; then
  echo "$output"
  exit 1
fi
echo "systemd units verified: $(ls "$work" | tr '\n' ' ')"
