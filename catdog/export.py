"""Ship a trained network without catdog: ONNX or TorchScript, uint8 photos in, P(dog) out.

The exported graph takes what a user has, a uint8 tensor of photos already resized to the
run's square, (N, C, S, S), RGB (or gray) channel-first, and returns P(dog), float32 (N,).
Everything catdog does in between is folded in: the per-channel normalisation
(x/255 − mean_c)/std_c, the ZCA whitening (a buffer of the network), batch norm in eval mode,
the ensemble's mean of the members' P(dog), and optionally the test-time views (mirror,
shifts) of `catdog.views`, as a constant gather.

ONNX uses torch's `torch.export`-based exporter (`pip install catdog[export]`: onnx,
onnxscript; onnxruntime to run it). TorchScript needs only torch to load.
"""

import contextlib
import copy
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from catdog.batches import _affine
from catdog.checkpoint import resolve_checkpoint
from catdog.errors import CheckpointError, ConfigError
from catdog.evaluate import Trained, chosen_views, restore
from catdog.outputs import check_new_file, written
from catdog.views import describe, gather_views, view_sources

Format = Literal["onnx", "torchscript"]
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
INPUT_NAME, OUTPUT_NAME = "pixels", "p_dog"


class Deployed(nn.Module):
    """uint8 photos (N, C, S, S) → P(dog) (N,): catdog's whole prediction path in one module."""

    def __init__(
        self,
        model: nn.Module,
        mean: torch.Tensor,
        std: torch.Tensor,
        tta: bool = False,
        tta_shift: int = 0,
        size: int = 0,
    ) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).cpu().eval().requires_grad_(False)
        # The same (scale, offset) as training's inputs: x·scale − offset = (x/255 − mean)/std.
        scale, offset = _affine(mean, std, torch.device("cpu"))
        self.register_buffer("scale", scale)
        self.register_buffer("offset", offset)
        self.tta, self.tta_shift = tta, tta_shift
        self.views = tta or tta_shift > 0
        if self.views:
            self.register_buffer("sources", view_sources(size, tta, tta_shift))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(torch.float32) * self.scale - self.offset
        if self.views:  # every view of every photo in one batch, P(dog) averaged per photo
            x = gather_views(x, self.sources)
        p_dog = torch.sigmoid(self.model(x.flatten(1)))  # (N·V,), or (N·V, members)
        views = len(self.sources) if self.views else 1  # a constant: the batch stays dynamic
        return p_dog.unflatten(0, (-1, views)).flatten(1).mean(dim=1)


def deployed(trained: Trained, tta: bool | None = None, tta_shift: int | None = None) -> Deployed:
    tta, tta_shift = chosen_views(trained.config, tta, tta_shift)
    mean, std = (torch.as_tensor(a, dtype=torch.float64) for a in (trained.mean, trained.std))
    size = trained.config.data.image_size
    return Deployed(trained.model, mean, std, tta, tta_shift, size).eval()


def input_shape(trained: Trained) -> tuple[int, int, int]:
    size = trained.config.data.image_size
    return (1 if trained.config.data.grayscale else 3, size, size)


@dataclass(frozen=True)
class Exported:
    path: Path
    input_shape: tuple[int, int, int]  # (C, S, S) of each photo
    tta: bool
    tta_shift: int = 0

    def describe(self) -> str:
        channels, size, _ = self.input_shape
        colour = "gray" if channels == 1 else "RGB"
        views = self.tta or self.tta_shift > 0
        mirror = f", TTA folded in ({describe(self.tta, self.tta_shift, size)})" if views else ""
        return (
            f"wrote {self.path}: input {INPUT_NAME} uint8 (N, {channels}, {size}, {size}) "
            f"{colour} photos squashed to {size}x{size}, output {OUTPUT_NAME} float32 (N,)"
            f"{mirror}"
        )


def export_checkpoint(target: str | Path) -> Path:
    """The checkpoint to export: a file as given, or a run folder's best.pt (never last.pt)."""
    target = Path(target)
    if target.is_dir() and not (target / "best.pt").is_file():
        raise CheckpointError(
            f"{target}: no best.pt in this run folder (it is written after the first "
            f"validated epoch); to export another checkpoint name it: catdog export "
            f"{target / 'last.pt'}"
        )
    return resolve_checkpoint(target)


def default_out(checkpoint: Path, format: Format) -> Path:
    """best.pt → best.onnx or best.torchscript.pt, beside the checkpoint."""
    return checkpoint.with_name(checkpoint.stem + SUFFIXES[format])


def export(
    target: str | Path,
    format: Format,
    out: Path | None = None,
    force: bool = False,
    tta: bool | None = None,
    tta_shift: int | None = None,
) -> "Exported":
    """Write the run's network as `format` to `out` (default beside the checkpoint)."""
    if format not in SUFFIXES:
        raise ConfigError(f"--format {format}: must be one of {', '.join(SUFFIXES)}")
    checkpoint = export_checkpoint(target)
    out = check_new_file(out or default_out(checkpoint, format), "--out", force)
    if format == "onnx":
        _require_onnx()
    trained = restore(checkpoint, device="cpu")
    module = deployed(trained, tta, tta_shift)
    example = torch.zeros((2, *input_shape(trained)), dtype=torch.uint8)
    with written(out) as temporary:
        if format == "onnx":
            to_onnx(module, example, temporary)
        else:
            to_torchscript(module, example, temporary)
    return Exported(out, input_shape(trained), module.tta, module.tta_shift)


def to_onnx(module: Deployed, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    # The exporter prints its progress and warns about its own internals: not the user's news.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    program.save(str(path))


def to_torchscript(module: Deployed, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        traced = torch.jit.trace(module, (example,), check_trace=False)
        torch.jit.save(traced, str(path))


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ConfigError(
            f"--format onnx needs the {error.name} package; install catdog[export] "
            "(pip install onnx onnxscript onnxruntime)"
        ) from None
