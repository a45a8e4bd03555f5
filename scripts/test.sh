#!/usr/bin/env bash
# The default test suite (slow tests excluded; run them with: scripts/test.sh -m slow).
# pytest's own exit code is returned, so "no tests collected" (5) fails too.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
exec .venv/bin/python -m pytest "$@"
