#!/usr/bin/env bash
# Installs and builds everything the collector and its tests need, on a fresh
# Debian 12 machine or an already set-up one. Idempotent: with nothing changed
# it only checks, in a few seconds. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 1>&2

# Build tools, then the real peers the integration tests talk to, then debootstrap
# (the package test installs the packages in a bare Debian 12), then Go and
# binutils (the Go crypto/tls tests build Go programs and read them with objdump).
PACKAGES=(
  clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool make g++ python3 pkg-config
  iproute2 util-linux procps nftables
  debootstrap
  golang-go binutils
  influxdb nginx-light wrk dnsmasq-base dnsutils dnsperf prometheus iperf3 openssl
)
# --kernels: also what the kernel matrix needs (test/kernels/vm.ts): qemu,
# a static busybox for the initramfs, and the tools to unpack kernel modules
if [ "${1:-}" = --kernels ]; then
  PACKAGES+=(qemu-system-x86 busybox-static cpio kmod xz-utils zstd)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps packages such as influxdb from starting their services;
  # one the machine already has is left as it is
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm dependencies, when the lockfile changed since the last install
stamp=node_modules/.setup-lock-sha
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# Node.js 24 LTS, which runs the collector, the tests and the benchmarks
# (build/node; this machine's apt offers no Node.js 24)
bash scripts/node-runtime.sh

bash scripts/build.sh
