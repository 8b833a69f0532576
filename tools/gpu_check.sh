#!/usr/bin/env bash
# The prepared device check (tools/gpu_check.py) with the repository's venv:
#   bash tools/gpu_check.sh                          # CUDA: MiT-B5, 960x540, <= 8 min
#   bash tools/gpu_check.sh --device cpu --small     # the CPU/CI mode
# Every argument goes to tools/gpu_check.py (see its --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MOASE_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "gpu_check.sh: no python at $VENV/bin/python; run tools/setup_env.sh" \
       "or set MOASE_VENV to the virtualenv" >&2
  exit 2
fi
cd "$ROOT"
exec "$VENV/bin/python" "$ROOT/tools/gpu_check.py" "$@"
