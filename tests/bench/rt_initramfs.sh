#!/usr/bin/env bash
# Builds the B1 baseline's initramfs: busybox (Debian's busybox-static) and cyclictest (Debian's
# rt-tests) with the shared libraries it loads, and an /init that runs the measurement given on
# the kernel command line (tenon_loops=N), prints cyclictest's results between marker lines on
# the serial console and ends the machine through QEMU's isa-debug-exit port (0xf4, written via
# /dev/port; QEMU then exits with status 3), with a reset as the fallback (QEMU runs with
# -no-reboot).
#
#   tests/bench/rt_initramfs.sh OUTPUT.cpio.gz
set -euo pipefail
output="${1:?usage: rt_initramfs.sh OUTPUT.cpio.gz}"
for tool in busybox cyclictest cpio gzip ldd; do
  if ! command -v "$tool" >/dev/null; then
    echo "rt_initramfs: $tool is missing (deploy/install-deps.sh installs it)" >&2
    exit 1
  fi
done
busybox=$(command -v busybox)
if ! file -L "$busybox" 2>/dev/null | grep -q "statically linked" &&
   ! ldd "$busybox" 2>&1 | grep -q "not a dynamic executable"; then
  echo "rt_initramfs: $busybox is not statically linked (install busybox-static)" >&2
  exit 1
fi
root=$(mktemp -d "${TMPDIR:-/tmp}/tenon-rt-initramfs-XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,usr/bin}
cp "$busybox" "$root/bin/busybox"
for applet in sh mount echo cat reboot sleep printf dd; do ln -s busybox "$root/bin/$applet"; done
cyclictest=$(command -v cyclictest)
cp "$cyclictest" "$root/usr/bin/cyclictest"
# The loader and libraries cyclictest needs, at the paths it asks for them.
ldd "$cyclictest" | awk '$3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | while read -r library; do
  mkdir -p "$root$(dirname "$library")"
  cp -L "$library" "$root$library"
done
cat >"$root/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
loops=10000
for argument in $(cat /proc/cmdline); do
  case "$argument" in tenon_loops=*) loops="${argument#tenon_loops=}" ;; esac
done
echo "tenon-rt: kernel $(cat /proc/sys/kernel/osrelease), preempt $(cat /sys/kernel/realtime 2>/dev/null || echo 0)"
echo "tenon-rt: cyclictest begin"
# -N: nanoseconds, in the histogram too (one bin per ns up to 20 us); -q: only the summary.
/usr/bin/cyclictest -m -p 90 -i 1000 -l "$loops" -q -N -h 20000 2>&1
echo "tenon-rt: cyclictest end status $?"
printf '\001' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
reboot -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) >"$output.tmp"
mv "$output.tmp" "$output"
echo "rt_initramfs: wrote $output ($(stat -c %s "$output") bytes)"
