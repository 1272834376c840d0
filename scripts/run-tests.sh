#!/usr/bin/env bash
# Runs every test: unit tests (no privileges) then integration tests (root,
# real kernel), one file at a time so integration tests never overlap.
set -euo pipefail
cd "$(dirname "$0")/.."
# on the project's Node.js 24 (scripts/node-runtime.sh): the tests, and the
# collector and peers they start
export PATH="$PWD/build/node/bin:$PATH"
mapfile -t files < <(find dist/test/unit dist/test/integration -name '*.test.js' 2>/dev/null | sort)
exec node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
