#!/usr/bin/env bash
# The checks that need a GPU, in one go: the optimizer proof tests on CUDA, the step benchmark
# on CUDA, then a one-GPU DDP run (torchrun, NCCL) against plain training. Run from anywhere on
# a CUDA machine with torch installed:
#     bash scripts/gpu_check.sh
# PYTHON picks the interpreter (default: python); GPU_CHECK_COMPILE=1 adds the benchmark's
# --compile column (torch.compile of our step; compiling takes minutes).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

section() { printf '\n===== %s =====\n' "$1"; }

section "environment"
"$PYTHON" - <<'PY'
import sys

import torch

print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}")
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device; run this on a GPU machine")
print(f"device: {torch.cuda.get_device_name(0)}")
PY

section "install"
# Import from outside the checkout, so only an installed catdog counts.
if (cd / && "$PYTHON" -c "import catdog.optim" 2>/dev/null); then
    echo "catdog is installed"
elif "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation -e .; then
    # --no-deps and no build isolation: the box may be offline; torch is all the checks need.
    echo "installed catdog from this checkout (editable, without dependencies)"
else
    echo "pip install failed; the checkout on PYTHONPATH will do"
fi
# Whatever is installed, the code under test is this checkout's.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c "import catdog.optim; print('testing', catdog.optim.__file__)"
if ! "$PYTHON" -c "import pytest" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet pytest \
        || { echo "gpu_check: pytest is missing and could not be installed" >&2; exit 1; }
fi

section "proof tests on CUDA (tests/test_optim*.py -m cuda)"
"$PYTHON" -m pytest tests/test_optim*.py -m cuda -q -rs -p no:cacheprovider

section "step benchmark on CUDA"
bench_args=(--device cuda)
if [[ "${GPU_CHECK_COMPILE:-0}" == 1 ]]; then
    bench_args+=(--compile)
fi
"$PYTHON" scripts/bench_optim.py "${bench_args[@]}"

section "one-GPU DDP run (scripts/gpu_check_ddp.sh)"
PYTHON="$PYTHON" bash scripts/gpu_check_ddp.sh

section "gpu_check: all done"
