#!/usr/bin/env bash
# One command for the whole benchmark: install what is missing, then run.
#
#   bash benchmarks/run.sh            # full run: results.md, results.json, README table
#   bash benchmarks/run.sh --quick    # smoke run (under a minute): results-quick.md
#   bash benchmarks/run.sh --help     # every option of run.py
#
# The venv is .venv at the repository root (override with BENCH_VENV).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${BENCH_VENV:-$(dirname "$HERE")/.venv}"
bash "$HERE/setup.sh" "$VENV" >&2
exec "$VENV/bin/python" "$HERE/run.py" "$@"
