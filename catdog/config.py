"""Run configuration: schema with documented defaults, `--set` overrides, validation.

A config file names only what it changes; every other key takes the default below. Any
problem (unknown key, wrong type, value out of range, broken YAML) raises `ConfigError` with one
line that names the key, and the nearest valid key for a typo.
"""

import difflib
import inspect
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from catdog.config_yaml import parse_yaml, read_config_file
from catdog.errors import ConfigError, shorten
from catdog.optim import OPTIMIZERS
from catdog.paths import expand_path

# ZCA needs the eigendecomposition of a features × features matrix: at 4,096² that took 17 s
# on a 2-core machine (768², the default: 0.1 s).
ZCA_MAX_FEATURES = 4096


def check_folder_name(name: str) -> str:
    """`name` if it is one folder name, inside its parent; else a ValueError saying why."""
    if not name or name in (".", ".."):
        raise ValueError(f"must be a folder name, got {name!r}")
    if "\0" in name:
        raise ValueError("must not contain a NUL character")
    if "/" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise ValueError(f"must be one folder name, without '/', got {shorten(repr(name))}")
    if len(os.fsencode(name)) > 255:
        raise ValueError(f"is {len(os.fsencode(name))} bytes long; a folder name has at most 255")
    return name


class Section(BaseModel):
    # strict: `epochs: "3"` or `grayscale: 1` are mistakes worth reporting, not coercing.
    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)


class AugmentConfig(Section):
    """Random changes to each training photo, done on whole batches as tensor operations; 0 = off.

    In order: mirror, shift, zoom and rotation, brightness, contrast (values clamped to [0, 1]
    after each colour step), then mixup (Zhang et al., 2018): each photo i of a batch is blended
    with a partner j = π(i) of the same batch (π a random permutation),
    x̃_i = λ_i x_i + (1 - λ_i) x_j and ỹ_i = λ_i y_i + (1 - λ_i) y_j, λ_i ~ Beta(α, α); labels
    become soft targets in [0, 1].
    """

    hflip: bool = False
    """Mirror each photo left-right with probability 1/2."""
    shift: int = Field(0, ge=0)
    """Translate by (dy, dx), each uniform in [-shift, shift] pixels; the border is filled by
    reflection (as reflect-padding then cropping)."""
    brightness: float = Field(0.0, ge=0.0, le=1.0)
    """Multiply by b ~ U[1 - brightness, 1 + brightness]."""
    contrast: float = Field(0.0, ge=0.0, le=1.0)
    """Blend with the photo's mean grey, c·x + (1 - c)·mean, c ~ U[1 - contrast, 1 + contrast]."""
    mixup: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    """Mixup's α: blend each photo and its label with another of the batch, weight ~ Beta(α, α)."""
    zoom: float = Field(0.0, ge=0.0, lt=1.0)
    """Scale each photo about its centre by z ~ U[1 - zoom, 1 + zoom] (z > 1 zooms in), sampled
    bilinearly with the border reflected; after the shift, before the colour changes."""
    rotate: float = Field(0.0, ge=0.0, le=180.0)
    """Rotate each photo about its centre by θ ~ U[-rotate, rotate] degrees, with the zoom."""

    @property
    def active(self) -> bool:
        return bool(
            self.hflip or self.shift or self.brightness or self.contrast or self.mixup
            or self.zoom or self.rotate
        )  # fmt: skip


class DataConfig(Section):
    root: str = "data/demo"
    """Folder of photos: Kaggle's flat layout (cat.1.jpg, dog.1.jpg) or cat/ + dog/ folders."""
    image_size: int = Field(32, ge=2, le=1024)
    """Each photo is resized to image_size × image_size, then flattened."""
    grayscale: bool = False
    """One channel instead of RGB."""
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    """Share of each class held out for validation (stratified, fixed by the seed)."""
    cache_dir: str | None = None
    """Decoded-photo cache; null: $CATDOG_CACHE_DIR, $XDG_CACHE_HOME/catdog or ~/.cache/catdog."""

    @field_validator("root", "cache_dir")
    @classmethod
    def _expand(cls, path: str | None) -> str | None:
        # `--set data.root=~/x`: bash leaves that `~` alone, so catdog expands it (and $VARS).
        return None if path is None else expand_path(path)

    workers: int | None = Field(None, ge=0)
    """Processes that decode photos on the first pass; null: all cores."""
    normalization: Literal["channel", "zca"] = "channel"
    """channel: (pixel/255 - mean_c) / std_c per colour channel, from the training split.
    zca: that, then ZCA whitening, (x - μ)W with W = Σ^(-1/2) regularised by zca_epsilon,
    Σ the training split's feature covariance; at most 4,096 features (3 × 36² or 64²)."""
    zca_epsilon: float = Field(0.01, gt=0.0)
    """zca: added to each eigenvalue of Σ (features of variance ~1), damping the directions
    of tiny variance (fine, noisy detail) instead of amplifying them without bound."""
    augment: AugmentConfig = AugmentConfig()

    @property
    def in_features(self) -> int:
        """Numbers per flattened photo: channels × image_size²."""
        return (1 if self.grayscale else 3) * self.image_size**2

    @model_validator(mode="after")
    def _zca_fits(self) -> "DataConfig":
        if self.normalization == "zca" and self.in_features > ZCA_MAX_FEATURES:
            raise ValueError(
                f"normalization=zca whitens {self.in_features:,} features here, more than the "
                f"{ZCA_MAX_FEATURES:,} its covariance matrix allows; lower data.image_size or "
                "use data.normalization: channel"
            )
        return self


class ModelConfig(Section):
    hidden: list[int] = Field(default_factory=lambda: [512, 128])
    """Widths of the hidden layers; [] is logistic regression."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout after each hidden layer."""
    input_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the input pixels."""
    batch_norm: bool = False
    """Batch normalisation after each hidden linear layer."""
    ensemble: int = Field(1, ge=1)
    """Independent networks (own init) trained side by side on the same batches; the
    prediction is their mean P(dog). 1: a single network."""

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, hidden: list[int]) -> list[int]:
        if any(width < 1 for width in hidden):
            raise ValueError(f"every width must be a positive integer, got {hidden}")
        return hidden


class OptimizerConfig(BaseModel):
    """`name` picks the optimizer; every other key is passed to its constructor."""

    # Extra keys are the optimizer's own hyperparameters (beta, formulation, …), checked
    # against its constructor in `_check_hyperparameters`.
    model_config = ConfigDict(extra="allow", strict=True)

    name: str = "sgd"
    """sgd | momentum | nesterov | rmsprop | adam | genetic."""
    lr: float = Field(0.01, gt=0.0)
    """The learning rate: the step size (for optimizers that take one)."""

    @field_validator("name")
    @classmethod
    def _known_name(cls, name: str) -> str:
        if name not in OPTIMIZERS:
            hint = _nearest(name, list(OPTIMIZERS))
            raise ValueError(
                f"unknown optimizer {name!r}{hint}; choose one of {sorted(OPTIMIZERS)}"
            )
        return name

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The keyword arguments for the optimizer's constructor."""
        arguments = dict(self.model_extra or {})
        if "lr" in optimizer_parameters(self.name):
            arguments["lr"] = self.lr
        return arguments


class ScheduleConfig(Section):
    name: Literal["constant", "cosine", "step"] = "constant"
    """Learning-rate schedule over the run, applied per step."""
    warmup_epochs: float = Field(0.0, ge=0.0)
    """Linear warm-up from 0 to lr over this many epochs."""
    step_epochs: int = Field(10, ge=1)
    """`step`: multiply lr by `gamma` every this many epochs."""
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    """`step`: the factor applied to lr every step_epochs."""
    min_lr_fraction: float = Field(0.0, ge=0.0, le=1.0)
    """`cosine`: the lr ends at this fraction of lr."""


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    """Passes over the training split."""
    batch_size: int | Literal["full"] = 64
    """1 is SGD, `full` is full-batch gradient descent, anything between is mini-batch."""
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)
    """Targets become ε/2 and 1 - ε/2."""
    early_stopping: int | None = Field(None, ge=1)
    """Stop after this many epochs without a better validation accuracy; null: never."""
    schedule: ScheduleConfig = ScheduleConfig()
    progress: bool = True
    """Show a progress bar per epoch."""
    threads: int | None = Field(None, ge=1, le=1024)
    """CPU threads for torch (`torch.set_num_threads`); null: torch's default (one per core).
    On a busy shared machine 1 thread can be several times faster than all cores."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Arithmetic of the training steps' matrix products: fp32, or bf16 under autocast (CPUs
    with AMX or AVX-512 BF16, and CUDA GPUs, run them faster). The weights, the optimizer's
    state, the loss, the whitening and every validation measurement stay in float32."""
    trajectory: int | None = Field(None, ge=1)
    """Record the weights every this many steps (and the first and last) in the run folder, as
    float16 moves from the start, for `catdog landscape`; null: off. 2 bytes a weight a row,
    capped at 1 GiB a run (the 1.6M-weight [512, 128] net at 32 px: 3.1 MiB a row)."""
    stop_when_stuck: bool = True
    """End the run (exit code 4) once MSE train and validation loss sit at the saturated-sigmoid
    plateau, 0.5 with accuracy at chance, for 2 epochs (see catdog.stuck); false: warn only."""

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, batch_size: int | str) -> int | str:
        if isinstance(batch_size, int) and batch_size < 1:
            raise ValueError(f"must be a positive integer or 'full', got {batch_size}")
        return batch_size


class EvalConfig(Section):
    tta: bool = False
    """Test-time augmentation: average P(dog) of each photo and its mirror image."""
    tta_shift: int = Field(0, ge=0)
    """Test-time augmentation over shifts for evaluate, predict and export: also average over
    each photo moved by every offset of up to N px along each axis, borders reflected as
    training's shifts do: (2N+1)² views, each mirrored too with tta (2 with tta: 50 forward
    passes a photo). The per-epoch validation leaves the shifts out (it would cost 50 times an
    epoch's validation), so its figures can differ from evaluate's. 0: off."""
    batch_size: int = Field(1024, ge=1)
    """Rows per forward pass when measuring, photos × test-time views (memory, not results)."""


class OutputConfig(Section):
    dir: str = "runs"
    """Parent folder of runs."""
    name: Annotated[str, AfterValidator(check_folder_name)] | None = None
    """Run folder name; null: the config file's name and the time."""
    tensorboard: bool = False
    """Also write TensorBoard events into the run folder: pip install 'catdog[tensorboard]'."""

    @field_validator("dir")
    @classmethod
    def _expand(cls, path: str) -> str:
        return expand_path(path)


class Config(Section):
    seed: int = Field(0, ge=0, lt=2**63)
    """Seeds the weights, the train/validation split, the batch order and augmentation."""
    device: str = "auto"
    """auto (CUDA when present) | cpu | cuda | cuda:N."""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: Literal["mse", "bce"] = "mse"
    """mse: the article's (label - sigmoid output)²; bce: binary cross-entropy."""
    optimizer: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    output: OutputConfig = OutputConfig()

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {device!r}")
        return device

    @model_validator(mode="after")
    def _check_hyperparameters(self) -> "Config":
        check_optimizer(self.optimizer)
        return self


def optimizer_parameters(name: str) -> list[str]:
    """The hyperparameters the optimizer's constructor takes (all but `params`)."""
    signature = inspect.signature(OPTIMIZERS[name].__init__)
    return [p for p in signature.parameters if p not in ("self", "params")]


def check_optimizer(optimizer: OptimizerConfig) -> None:
    """Each key must be one the optimizer takes, with a value the optimizer accepts.

    The values go through the optimizer's own `check_hyperparameters`, with its constructor's
    defaults for the keys not given: the same check its constructor runs, without building one.
    """
    accepted = optimizer_parameters(optimizer.name)
    given = list(optimizer.model_extra or {})
    if "lr" in optimizer.model_fields_set:
        given.append("lr")
    for key in given:
        if key not in accepted:
            hint = _nearest(key, accepted, prefix="optimizer.")
            raise ConfigError(
                f"optimizer.{key}: not taken by optimizer {optimizer.name!r}{hint} "
                f"(it takes: {', '.join(accepted)})"
            )
    signature = inspect.signature(OPTIMIZERS[optimizer.name].__init__)
    defaults = {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    try:
        OPTIMIZERS[optimizer.name].check_hyperparameters(defaults | optimizer.hyperparameters)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"optimizer ({optimizer.name}): {error}") from None


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `--set dotted.key=value`; the value is read as YAML (`3`, `0.1`, `[64, 32]`)."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set optimizer.lr=0.05")
    value = parse_yaml(raw, f"--set {key}")
    node = data
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[: depth + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Read `path` (or start from the defaults), apply `--set` overrides, and validate."""
    data = read_config_file(path) if path is not None else {}
    for assignment in overrides:
        apply_override(data, assignment)
    source = str(path) if path is not None else "config"
    try:
        return validate(data, source=source)
    except ConfigError as error:
        raise ConfigError(_blame_override(str(error), source, overrides)) from None


def _blame_override(message: str, source: str, overrides: list[str] | tuple[str, ...]) -> str:
    """`--set train.epochs: ...` rather than `configs/sgd.yaml: ...` when --set gave the value."""
    detail = message.removeprefix(f"{source}: ")
    key = detail.split(":", 1)[0]
    for assignment in overrides:
        given = assignment.partition("=")[0].strip()
        if key == given or key.startswith(f"{given}."):
            return f"--set {detail}"
    return message


def validate(data: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: {shorten(_describe(error), 400)}") from None


def save_config(config: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(config_dict(config), sort_keys=False))


def config_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain data; reading it back gives the same `Config`."""
    data = config.model_dump(mode="json")
    if "lr" not in optimizer_parameters(config.optimizer.name):
        del data["optimizer"]["lr"]  # the genetic algorithm takes none; naming one is an error
    return data


# --- one-line messages ------------------------------------------------------------------


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    location = [str(part) for part in first["loc"]]
    key = ".".join(location)
    if first["type"] == "extra_forbidden":
        section = _section_model(location[:-1])
        fields = list(section.model_fields) if section else []
        hint = _nearest(location[-1], fields, prefix=".".join([*location[:-1], ""]))
        return f"{key}: unknown key{hint}"
    message = first["msg"]
    if first["type"].startswith("value_error"):
        message = message.removeprefix("Value error, ")
    elif "input" in first and not isinstance(first["input"], dict):
        message = f"{message}, got {shorten(repr(first['input']))}"
    # A `Literal | int` field reports one error per branch; the first says enough.
    # A whole-config check (the optimizer's hyperparameters) names its own key.
    return f"{key}: {message}" if key else message


def _section_model(location: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in location:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _nearest(word: str, choices: list[str], prefix: str = "") -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{prefix}{match[0]}'?)" if match else ""
