"""The Python API, for notebooks and scripts: the functions the `catdog` commands call.

    import catdog

    summary = catdog.train("sgd", data__root="~/kaggle/train", train__epochs=3)
    result = catdog.evaluate(summary.run_dir)             # its validation split
    result = catdog.evaluate(summary.run_dir, "~/held-out")
    for p in catdog.predict(summary.run_dir, ["cat.jpg", "photos/"]):
        print(p.path, p.label, p.probability)

`train` takes a `Config`, a YAML path or a shipped config's name (`catdog configs`), then
overrides as keywords: `optimizer__lr=0.05` (a double underscore for each dot), or
`**{"optimizer.lr": 0.05}`. The functions are quiet by default (`progress=False`, `quiet=True`:
no progress bars, no epoch lines); errors are the exceptions of `catdog.errors`, whose
messages are the CLI's one-line errors.
"""

import contextlib
import copy
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catdog.errors import ConfigError, DataError
from catdog.paths import expand_path, run_label

if TYPE_CHECKING:
    from catdog.config import Config
    from catdog.predict import Prediction
    from catdog.train import Summary


def load(
    config_or_path: "Config | str | os.PathLike[str] | None" = None,
    sets: Sequence[str] = (),
    overrides: dict[str, Any] | None = None,
) -> tuple["Config", str]:
    """The config and the run-name stem: `--set` strings (YAML values) first, then Python ones."""
    from catdog.config import Config, apply_override, config_dict, load_config, validate
    from catdog.shipped import resolve_config

    if isinstance(config_or_path, Config):
        config, label = config_or_path, "run"
        if sets:
            data = copy.deepcopy(config_dict(config))
            for assignment in sets:
                apply_override(data, assignment)
            config = validate(data, source="--set")
    else:
        path = resolve_config(config_or_path) if config_or_path is not None else None
        config, label = load_config(path, list(sets)), run_label(config_or_path)
    if overrides:
        data = copy.deepcopy(config_dict(config))
        for key, value in overrides.items():
            *sections, leaf = key.replace("__", ".").split(".")
            node = data
            for section in sections:
                node = node.setdefault(section, {})
            node[leaf] = value
        config = validate(data, source="overrides")
    return config, label


@dataclass(frozen=True)
class Training:
    """A run about to train: its validated config and, on a resume, the `last.pt` it continues."""

    config: "Config"
    label: str  # the new run folder's name stem
    source: str  # where the config came from, for error messages
    checkpoint: dict[str, Any] | None = None  # read once, handed to the loop


def prepare_training(
    config_or_path: "Config | str | os.PathLike[str] | None" = None,
    *,
    progress: bool | None = False,
    resume: str | os.PathLike[str] | None = None,
    sets: Sequence[str] = (),
    label: str | None = None,
    **overrides: Any,
) -> Training:
    """Everything `train` checks before any work: the config parsed once, `last.pt` read once."""
    from catdog.runs import RESUMABLE_KEYS, load_resume

    if progress is not None:
        overrides = {"train.progress": progress, **overrides}
    if resume is None:
        config, stem = load(config_or_path, sets, overrides)
        source = f"{config_or_path}" if config_or_path is not None else "the default config"
        return Training(config, label or stem, source)
    for key in overrides:
        if key.replace("__", ".") not in RESUMABLE_KEYS:
            raise ConfigError(f"{key}: only {', '.join(RESUMABLE_KEYS)} change on a resume")
    config, checkpoint = load_resume(Path(expand_path(resume)), list(sets))
    config, _ = load(config, (), overrides)
    return Training(config, "run", f"the run's config ({checkpoint['path']})", checkpoint)


def run_training(training: Training, quiet: bool = True) -> "Summary":
    """Train what `prepare_training` checked: into a new run folder, or on into the resumed one."""
    from catdog.experiment import run
    from catdog.train import train as train_into

    config, checkpoint = training.config, training.checkpoint
    resuming = checkpoint is not None
    with _data_errors(config, training.source, suggest=not resuming), _quiet(quiet):
        if checkpoint is None:
            return run(config, label=training.label)
        return train_into(config, Path(checkpoint["path"]).parent, checkpoint=checkpoint)


def train(
    config_or_path: "Config | str | os.PathLike[str] | None" = None,
    *,
    progress: bool | None = False,
    quiet: bool = True,
    resume: str | os.PathLike[str] | None = None,
    sets: Sequence[str] = (),
    label: str | None = None,
    **overrides: Any,
) -> "Summary":
    """Train into a new run folder (or continue `resume`'s); returns the run's summary.

    `progress=None` keeps the config's `train.progress`; `quiet` silences the header and the
    epoch lines (warnings still go to stderr); `sets` are `--set` strings (YAML values);
    `label` names the run folder (`LABEL-<time>`; default: the config file's name).
    """
    training = prepare_training(
        config_or_path, progress=progress, resume=resume, sets=sets, label=label, **overrides
    )
    return run_training(training, quiet)


def evaluate(
    run: str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    *,
    tta: bool | None = None,
    tta_shift: int | None = None,
    device: str | None = None,
    progress: bool = False,
    report: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Accuracy, loss, count and confusion matrix (with the checkpoint and its epoch), AUC,
    log-loss and ECE of a run (its best.pt, or a checkpoint file) on a photo folder, by default
    its validation split; `report` names a folder for the pictures of `catdog.report`. `tta`
    (mirror) and `tta_shift` (shifts of up to N px) average test-time views; None: the run's
    eval.tta and eval.tta_shift."""
    from catdog.evaluate import evaluate as evaluate_run
    from catdog.rounding import rounded

    target = Path(expand_path(run))
    folder = Path(expand_path(data)) if data is not None else None
    try:
        result, details = evaluate_run(
            target,
            folder,
            tta=tta,
            device=device,
            progress=progress,
            report=Path(expand_path(report)) if report is not None else None,
            force=force,
            tta_shift=tta_shift,
        )
    except DataError as error:
        if folder is None:
            raise DataError(f"{error} (data.root, read from the config saved in {run})") from None
        raise
    return rounded("", {**result.as_dict(), **details})


def predict(
    run: str | os.PathLike[str],
    photos: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    tta: bool | None = None,
    tta_shift: int | None = None,
    device: str | None = None,
    progress: bool = False,
) -> list["Prediction"]:
    """P(dog) for each photo (folders: every image below them), in order; a photo that can't be
    read gets `probability=None` and its `error`. `tta`, `tta_shift`: as for `evaluate`."""
    from catdog.predict import collect_photos
    from catdog.predict import predict as predict_photos

    if isinstance(photos, str | os.PathLike):
        photos = [photos]
    paths = collect_photos([expand_path(photo) for photo in photos])
    target = Path(expand_path(run))
    return predict_photos(target, paths, tta, device, progress, tta_shift=tta_shift)


def check_can_run(config: "Config") -> None:
    """What can be checked before any slow step: the device, the output folder, TensorBoard."""
    from catdog.devices import resolve_device

    resolve_device(config.device)
    parent = Path(config.output.dir)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"output.dir {parent}: cannot make it ({error.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"output.dir {parent}: not writable; choose another with --set")
    if config.output.tensorboard:
        from catdog.tensorboard import require_tensorboard

        require_tensorboard()


# --- helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    if not quiet:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@contextlib.contextmanager
def _data_errors(config: "Config", source: str, suggest: bool = False) -> Iterator[None]:
    """Say where a missing `data.root` came from, and what to do about it."""
    from catdog.paths import absolute, command

    try:
        yield
    except DataError as error:
        message, root = str(error), config.data.root
        if not any(message.startswith(f"{r}: no such folder") for r in (root, absolute(root))):
            raise
        hint = (
            f"; draw demo photos there with `{command()} make-demo-data {root}`, "
            "or point at yours with --set data.root=DIR"
            if suggest
            else ""
        )
        raise DataError(f"data.root {root} (from {source}): no such folder{hint}") from None
