#!/usr/bin/env bash
# Builds the eBPF objects, the native addon and the TypeScript; each step is
# incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

make -s -C bpf

# node-gyp takes Node's headers from /usr/include/node instead of downloading them.
gyp=(npx --no-install node-gyp --nodedir=/usr -C native --loglevel=warn)
[ -f native/build/Makefile ] || "${gyp[@]}" configure
"${gyp[@]}" build >/dev/null

npx --no-install tsc -p .
