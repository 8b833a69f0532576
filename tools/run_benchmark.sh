#!/usr/bin/env bash
# Set up the pinned environment and run the main job: the synthetic
# city -> weather CTTA benchmark (the default rows of
# tools/synthetic_benchmark/stages.py: DEFAULT_METHODS). Arguments go to
# tools/run_synthetic_benchmark.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
VENV="${MOASE_VENV:-$ROOT/.venv}"
cd "$ROOT"
if [ -f "$ROOT/tools/run_synthetic_benchmark.py" ]; then
  exec "$VENV/bin/python" "$ROOT/tools/run_synthetic_benchmark.py" "$@"
fi
cat <<'MSG'
[benchmark] Set-up is done. The main job -- generate the synthetic city->weather
data, train the SegFormer-B0 source model, and run Source, NormStat, TENT, CoTTA and
MoASE over 3 rounds of Fog -> Night -> Rain -> Snow -- is not part of this version
yet (tools/run_synthetic_benchmark.py). Meanwhile:
  .venv/bin/python tools/benchmark_adapter.py        # adapter cost vs stock MiT
  .venv/bin/python tools/test_ctta.py CONFIG CKPT    # a CTTA stream on your data
MSG
