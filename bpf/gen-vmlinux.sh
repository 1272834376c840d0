#!/usr/bin/env bash
# Regenerates vmlinux.h from the running kernel's BTF. The vendored copy was
# made on Linux 6.18; CO-RE relocations make the objects portable, so it only
# needs regenerating to use types or fields that newer kernels add.
set -euo pipefail
cd "$(dirname "$0")"
bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h.tmp
mv vmlinux.h.tmp vmlinux.h
echo "bpf/vmlinux.h regenerated from $(uname -r)"
