#!/usr/bin/env bash
# Create (or refresh) the project's isolated environment with the pinned stack.
#
# Idempotent: re-running it only installs what is missing. The mmcv 2.1.0 wheel, built
# from PyPI's source archive with its compiled ops (~20-30 min on 2 cores), is cached
# under $MOASE_CACHE (default ~/.cache/mmseg-moase) keyed by Python and torch version,
# so a second set-up on the same machine reuses it and takes under 2 minutes.
#
# Environment knobs:
#   MOASE_VENV   where the virtualenv lives          (default: <repo>/.venv)
#   MOASE_TORCH  pip requirement for torch           (default: torch==2.13.0, CPU build)
#   MOASE_CACHE  wheel cache directory               (default: ~/.cache/mmseg-moase)
#   MOASE_PYTHON interpreter used to create the venv (default: python3.11)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MOASE_VENV:-$ROOT/.venv}"
TORCH_SPEC="${MOASE_TORCH:-torch==2.13.0}"
CACHE="${MOASE_CACHE:-$HOME/.cache/mmseg-moase}"
PY="${MOASE_PYTHON:-python3.11}"
MMCV_VERSION=2.1.0

log() { printf '[setup] %s\n' "$*" >&2; }

if ! command -v "$PY" >/dev/null 2>&1; then
  log "error: $PY not found; install Python 3.11 or set MOASE_PYTHON"; exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv at $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check -q)

# Markers make the second run cheap: each stage is skipped when its requirement file is
# unchanged and the packages still import.
stamp() { sha1sum "$@" | sha1sum | cut -c1-16; }

NUMPY_PIN="$(grep -E '^numpy==' "$ROOT/requirements/runtime.txt")"
if ! "$VPY" -c "import torch, numpy" >/dev/null 2>&1; then
  log "installing $TORCH_SPEC"
  "${PIP[@]}" install "$TORCH_SPEC" "$NUMPY_PIN"
fi

REQ_STAMP="$(stamp "$ROOT"/requirements/*.txt "$ROOT/setup.cfg")"
if [ "$(cat "$VENV/.moase-req-stamp" 2>/dev/null)" != "$REQ_STAMP" ]; then
  log "installing pinned runtime and test requirements"
  "${PIP[@]}" install -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
  "${PIP[@]}" install --no-deps -r "$ROOT/requirements/nodeps.txt"
  "${PIP[@]}" install --no-deps --no-build-isolation -e "$ROOT"
  echo "$REQ_STAMP" > "$VENV/.moase-req-stamp"
fi

TORCH_VER="$("$VPY" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
PY_TAG="$("$VPY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION-$PY_TAG-torch$TORCH_VER"

have_mmcv_ops() {
  "$VPY" - <<'PY' >/dev/null 2>&1
import mmcv, mmcv.ops
from mmcv.utils import ext_loader
ext_loader.load_ext('_ext', ['nms'])
assert mmcv.__version__ == '2.1.0'
PY
}

if ! have_mmcv_ops; then
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_VERSION with compiled ops against torch $TORCH_VER"
    log "(one-off, about 20-30 minutes on 2 cores; cached in $WHEEL_DIR)"
    # mmcv 2.1.0's setup.py needs setuptools<70; put back the pinned runtime
    # setuptools once the wheel is built.
    "${PIP[@]}" install -r "$ROOT/requirements/build.txt"
    mkdir -p "$WHEEL_DIR.partial"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" FORCE_CUDA="${FORCE_CUDA:-0}" \
      "${PIP[@]}" wheel --no-build-isolation --no-deps --no-binary mmcv \
      -w "$WHEEL_DIR.partial" "mmcv==$MMCV_VERSION"
    rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.partial" "$WHEEL_DIR"
    "${PIP[@]}" install "$(grep -E '^setuptools==' "$ROOT/requirements/runtime.txt")"
  else
    log "using cached mmcv wheel from $WHEEL_DIR"
  fi
  # Without its declared dependencies (they include the GUI opencv-python; the
  # headless build and the rest are pinned in requirements/runtime.txt), so pip's
  # note that "mmcv requires opencv-python" is expected.
  "${PIP[@]}" install --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl 2>&1 \
    | grep -v -e "dependency resolver" -e "requires opencv-python" >&2 || true
fi

have_mmcv_ops || { log "error: mmcv ops do not import after set-up"; exit 1; }
"$VPY" -c "import mmseg, mmseg_moase; print('[setup] ok: torch', __import__('torch').__version__, '| mmcv', __import__('mmcv').__version__, '| mmseg', mmseg.__version__)" >&2
