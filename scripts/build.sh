#!/usr/bin/env bash
# Builds the eBPF objects, the native addon and the TypeScript; each step is
# incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

make -s -C bpf

# Configured again when binding.gyp changed. node-gyp takes Node's headers from /usr/include/node instead of downloading them.
gyp=(npx --no-install node-gyp --nodedir=/usr -C native --loglevel=warn)
[ native/build/Makefile -nt native/binding.gyp ] || "${gyp[@]}" configure
"${gyp[@]}" build >/dev/null

npx --no-install tsc -p .

# The commit this build is made from, for --version ("-dirty": with uncommitted
# changes to tracked files); rewritten only when it changes.
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit+=-dirty
fi
info="{\"commit\":\"$commit\"}"
[ "$(cat dist/build-info.json 2>/dev/null)" = "$info" ] || echo "$info" > dist/build-info.json
