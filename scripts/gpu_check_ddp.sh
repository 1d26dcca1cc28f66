#!/usr/bin/env bash
# The DDP check that needs a GPU: one process under torchrun (world size 1, NCCL on cuda:0)
# trains exactly as plain `catdog train` does. Run from anywhere on a CUDA machine:
#     bash scripts/gpu_check_ddp.sh
# PYTHON picks the interpreter (default: python). GPU_CHECK_DEVICE=cpu runs the same check on
# the CPU with gloo, to try the script where there is no GPU.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export CATDOG_CACHE_DIR="$WORK/cache"

section() { printf '\n===== %s =====\n' "$1"; }

section "environment"
"$PYTHON" - "$DEVICE" <<'PY'
import sys

import torch

print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}")
if sys.argv[1] == "cuda":
    if not torch.cuda.is_available():
        sys.exit("gpu_check_ddp: torch sees no CUDA device; run this on a GPU machine")
    print(f"device: {torch.cuda.get_device_name(0)}, NCCL {torch.cuda.nccl.version()}")
PY

section "photos and config"
"$PYTHON" - "$WORK" "$DEVICE" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

work, device = Path(sys.argv[1]), sys.argv[2]
photos = work / "photos"
photos.mkdir()
generator = np.random.default_rng(0)
for label, tint in (("cat", (60, 0, -60)), ("dog", (-60, 0, 60))):
    for index in range(100):
        noise = generator.integers(60, 196, size=(24, 24, 3))
        image = np.clip(noise + np.array(tint), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(photos / f"{label}.{index}.jpg", quality=90)
# Batch 47 of 160 training photos: the last batch has 19 rows. Batch norm and dropout take
# DDP's buffer broadcast and the random stream, which one process must share with no DDP.
(work / "check.yaml").write_text(
    f"device: {device}\n"
    f"data: {{root: {photos}, image_size: 16, workers: 0}}\n"
    "model: {hidden: [64, 32], batch_norm: true, dropout: 0.1}\n"
    "optimizer: {name: nesterov, lookahead: true, lr: 0.02}\n"
    "train: {epochs: 3, batch_size: 47, progress: false}\n"
    f"output: {{dir: {work / 'runs'}}}\n"
)
print(f"200 photos in {photos}; config {work / 'check.yaml'}")
PY

section "one process, no torchrun"
"$PYTHON" -m catdog train --config "$WORK/check.yaml" --set output.name=one

section "torchrun, one process: world size 1"
"$PYTHON" -m torch.distributed.run --standalone --nproc_per_node 1 \
    -m catdog train --config "$WORK/check.yaml" --set output.name=ddp

section "the backend follows the device"
cat >"$WORK/backend.py" <<'PY'
import sys

import torch
import torch.distributed as dist

from catdog import distributed

on_gpu = sys.argv[1] == "cuda"
expected = ("nccl", torch.device("cuda", 0)) if on_gpu else ("gloo", torch.device("cpu"))
with distributed.process_group(sys.argv[1]):
    found = (dist.get_backend(), distributed.device())
    print(f"backend {found[0]}, device {found[1]}")
    assert found == expected, f"expected {expected}, found {found}"
PY
"$PYTHON" -m torch.distributed.run --standalone --nproc_per_node 1 "$WORK/backend.py" "$DEVICE"

section "same weights, same metrics"
"$PYTHON" - "$WORK/runs" <<'PY'
import sys
from pathlib import Path

import torch

from catdog.train import read_metrics

runs = Path(sys.argv[1])
one, ddp = (torch.load(runs / name / "last.pt", weights_only=True) for name in ("one", "ddp"))
difference = max(
    float((one["model"][key].double() - ddp["model"][key].double()).abs().max())
    for key in one["model"]
)
rows = [read_metrics(runs / name / "metrics.csv") for name in ("one", "ddp")]
same_shape = [list(r) for r in rows[0]] == [list(r) for r in rows[1]]
print(f"largest weight difference {difference:.3g} (limit 1e-5); same metrics columns: {same_shape}")
for a, b in zip(*rows, strict=True):
    print(f"  epoch {a['epoch']:.0f}: val_loss {a['val_loss']:.6f} vs {b['val_loss']:.6f}")
if difference > 1e-5 or not same_shape:
    sys.exit("gpu_check_ddp: torchrun with one process does not train like one process")
PY

section "gpu_check_ddp: all done"
