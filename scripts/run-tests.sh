#!/usr/bin/env bash
# Runs every test: unit tests (no privileges) then integration tests (root,
# real kernel), one file at a time so integration tests never overlap.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find dist/test/unit dist/test/integration -name '*.test.js' 2>/dev/null | sort)
exec node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
