#!/usr/bin/env bash
# The test suite: the default tests (slow ones excluded) on every core (pytest-xdist, one torch thread
# per worker), then the smoke study (-m smoke: the tests that run studies; one process, as its
# tests share one run of the study). With arguments, just pytest with them: scripts/test.sh -m slow (the slow
# end-to-end tests), scripts/test.sh tests/test_lstm.py, ...
# pytest's own exit code is returned, so "no tests collected" (5) fails too.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest -q -n auto
exec .venv/bin/python -m pytest -q -m smoke
