#!/usr/bin/env bash
# Installs the Debian packages TenonOS needs to build, test, benchmark and run its demo.
# Idempotent: installs only what is missing and says what it installs. Run as root or with sudo.
set -euo pipefail

packages=(
  # build
  build-essential cmake ccache pkg-config clang lld binutils
  # hosted libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libsqlite3-dev libpq-dev libspdlog-dev libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  libseccomp-dev libssl-dev
  # the QEMU engine (Mortise runs guests on QEMU where /dev/kvm is missing)
  qemu-system-x86 qemu-utils
  # tests and benchmarks (the B1 baseline boots Debian's PREEMPT_RT kernel from a busybox initramfs)
  linux-image-rt-amd64 busybox-static cpio
  libgtest-dev libgmock-dev libbenchmark-dev libclang-rt-14-dev rt-tests prometheus jq curl
  # the PostgreSQL store's tests start a private server of their own (initdb, pg_ctl); the
  # package's system cluster is neither used nor needed
  postgresql
  # code style
  clang-format clang-tidy
)

if [[ ! -r /etc/os-release ]]; then
  echo "install-deps: cannot read /etc/os-release; TenonOS supports Debian 12 and Ubuntu 22.04+" >&2
  exit 1
fi
. /etc/os-release
case "${ID:-}:${ID_LIKE:-}" in
  debian:*|ubuntu:*|*:*debian*) ;;
  *)
    echo "install-deps: unsupported system '${PRETTY_NAME:-unknown}'; TenonOS supports Debian 12" \
         "and Ubuntu 22.04+ (apt). Install the equivalents of: ${packages[*]}" >&2
    exit 1
    ;;
esac
if [[ "$(uname -m)" != "x86_64" ]]; then
  echo "install-deps: unsupported architecture $(uname -m); the build needs an x86_64 host" >&2
  exit 1
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null; then
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists once if they are missing or a package cannot be found.
if ! "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "install-deps: done"
