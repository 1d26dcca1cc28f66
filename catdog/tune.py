"""`catdog tune`: search a config's hyperparameters with Optuna, every trial a catdog run.

    <out-dir>/<name>-<time>/
        tune.yaml       the request (base config, --space, trials, ...): --resume reads it
        study.journal   Optuna's journal of every trial (unless --storage names another place)
        trials/NNN/     each trial's run folder (config.yaml, metrics.csv, last.pt, ...)
        trials.csv      one row per trial: number, state, objective, epochs, seconds, values
        tune.png        the objective against each searched key (pruned trials marked)
        best.yaml       the best trial's config, for `catdog train --config best.yaml`

The sampler is TPE (Optuna's tree-structured Parzen estimator): its first trials are random,
then it proposes values where the good trials cluster. Each epoch's validation figure is reported
to a median pruner, which stops a trial whose figure is worse than the median of the earlier
trials at the same epoch (from epoch 2 on, once 3 trials have finished). A trial's sampler is
seeded from (seed, trial number), so one process repeats the same trials exactly; processes
sharing a study (--jobs, --storage) have distinct trial numbers, so they never draw the same
values from the same seed.

The objective (best val_loss or val_accuracy over a trial's epochs) is measured on the
validation split, so the winner's figure there is optimistic: it was picked for doing well on
those photos. `--holdout F` keeps a stratified share F of the validation split out of every
trial and measures the best trial's best.pt on it once, at the end.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

from catdog.builders import PreparedData, prepare_data
from catdog.config import Config, apply_override, validate
from catdog.data import stratified_split
from catdog.errors import ConfigError, Diverged, Interrupted, Stuck
from catdog.runs import fresh_folder, load_resume, run_metrics
from catdog.search_space import Dimension, apply, parse_space

REQUEST = "tune.yaml"
JOURNAL = "study.journal"
TRIALS = "trials"
OBJECTIVES = {"val_loss": "minimize", "val_accuracy": "maximize"}

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class TuneRequest:
    """Everything a tune needs, saved as tune.yaml so that `--resume` needs nothing else."""

    base: dict[str, Any]
    """The config as plain data: the file with its --set overrides applied."""
    space: list[str]
    trials: int
    objective: str = "val_loss"
    holdout: float = 0.0
    storage: str | None = None
    study_name: str = "catdog"
    jobs: int = 1

    def check(self) -> list[Dimension]:
        """Refuse bad input in one line before anything is written; the space's dimensions."""
        if self.trials < 1:
            raise ConfigError(f"--trials {self.trials}: give at least 1 trial")
        if self.objective not in OBJECTIVES:
            raise ConfigError(
                f"--objective {self.objective}: choose one of {', '.join(OBJECTIVES)}"
            )
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(
                f"--holdout {self.holdout}: a share of the validation split in [0, 1)"
            )
        if self.jobs < 1:
            raise ConfigError(f"--jobs {self.jobs}: give at least 1 process")
        config = validate(json.loads(json.dumps(self.base)), source="config")
        if config.data.val_fraction == 0:
            raise ConfigError(
                "data.val_fraction 0: tune scores each trial on its validation split, and this "
                "config trains on every photo; hold some out: --set data.val_fraction=0.2"
            )
        return parse_space(self.space, self.base)

    @property
    def seed(self) -> int:
        return int(self.base.get("seed", 0))


@dataclass
class TrialRecord:
    number: int
    state: str
    value: float | None
    epochs: int
    seconds: float
    params: dict[str, Any]
    run_dir: str
    note: str = ""


@dataclass
class TuneResult:
    folder: Path
    records: list[TrialRecord]
    best: TrialRecord | None
    holdout: dict[str, float] = field(default_factory=dict)


# --- starting, resuming -----------------------------------------------------------------------


def start(request: TuneRequest, parent: Path, name: str) -> Path:
    """Check the request, open its storage, then make the tune's folder and write tune.yaml."""
    request.check()
    if request.storage is not None:
        open_study(request, Path("."))  # an unreachable database fails now, before any folder
    folder = fresh_folder(parent, name, "--out-dir")
    prepare(request, folder)
    return folder


def prepare(request: TuneRequest, folder: Path) -> None:
    """Write the request as `folder`/tune.yaml (the folder made if missing)."""
    request.check()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REQUEST).write_text(yaml.safe_dump(asdict(request), sort_keys=False))


def load_request(folder: Path) -> TuneRequest:
    path = folder / REQUEST
    if not path.is_file():
        raise ConfigError(
            f"--resume {folder}: not a tune folder (no {REQUEST}); give the folder "
            "`catdog tune` printed"
        )
    return TuneRequest(**yaml.safe_load(path.read_text()))


def open_study(request: TuneRequest, folder: Path) -> optuna.Study:
    """The study in --storage (a database URL, or a journal file), or in the folder's journal."""
    location = request.storage or str(folder / JOURNAL)
    try:
        if "://" in location:
            storage: Any = optuna.storages.RDBStorage(location)
        else:
            backend = optuna.storages.journal.JournalFileBackend(location)
            storage = optuna.storages.journal.JournalStorage(backend)
        return optuna.create_study(
            storage=storage,
            study_name=request.study_name,
            direction=OBJECTIVES[request.objective],
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
            load_if_exists=True,
        )
    except (ValueError, ImportError, OSError, RuntimeError) as error:
        raise _storage_error(location, error) from None
    except Exception as error:  # sqlalchemy's OperationalError and kin: one line, not a trace
        raise _storage_error(location, error) from None


def _storage_error(location: str, error: BaseException) -> ConfigError:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return ConfigError(
        f"--storage {location}: cannot open the study storage ({first}); give a reachable "
        "database URL (e.g. sqlite:///tune.db) or a journal file in an existing folder"
    )


# --- the trials ---------------------------------------------------------------------------------


def run_trials(folder: Path, worker: int = 0, workers: int = 1) -> None:
    """Run trials in this process until the study holds `trials` of them.

    On `--resume` a trial left running (interrupted) in this folder continues from its
    last.pt, or starts again if it had none; with several workers, trial k goes to worker
    k mod workers.
    """
    request = load_request(folder)
    dimensions = request.check()
    study = open_study(request, folder)
    data_cache: dict[str, PreparedData] = {}
    for frozen in _interrupted_trials(study, folder):
        if frozen.number % workers == worker:
            trial = optuna.trial.Trial(study, frozen._trial_id)
            _seed_sampler(study, request, trial.number)
            _run_trial(study, trial, request, dimensions, folder, data_cache)
    while len(study.get_trials(deepcopy=False)) < request.trials:
        trial = study.ask()
        if trial.number >= request.trials:  # another process took the last one meanwhile
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        trial.set_user_attr("run_dir", str(folder / TRIALS / f"{trial.number:03d}"))
        _seed_sampler(study, request, trial.number)
        _run_trial(study, trial, request, dimensions, folder, data_cache)


def _seed_sampler(study: optuna.Study, request: TuneRequest, number: int) -> None:
    """A TPE sampler seeded by (seed, trial number): the same trial draws the same values however
    often the tune was stopped and resumed, and the processes sharing a study, whose trials
    have distinct numbers, never draw the same random start. The first trials are random."""
    seed = int(np.random.SeedSequence([request.seed, number]).generate_state(1)[0])
    study.sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=max(2, min(10, request.trials // 3))
    )


def _interrupted_trials(study: optuna.Study, folder: Path) -> list[optuna.trial.FrozenTrial]:
    """This folder's trials still marked running: a stopped tune's."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return [t for t in running if Path(t.user_attrs.get("run_dir", "")).parent == folder / TRIALS]


class _Reporter:
    """Reports each epoch's objective to the trial, and prunes it when the pruner says so."""

    def __init__(self, trial: optuna.Trial, objective: str) -> None:
        self.trial, self.objective = trial, objective

    def after_step(self, run: Any, loss: float, lr: float) -> None:
        pass

    def after_epoch(self, run: Any, row: dict[str, float]) -> None:
        epoch = int(row["epoch"])
        self.trial.report(row[self.objective], epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    def close(self) -> None:
        pass


def _run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    request: TuneRequest,
    dimensions: Sequence[Dimension],
    folder: Path,
    data_cache: dict[str, PreparedData],
) -> None:
    from catdog.train import train

    run_dir = folder / TRIALS / f"{trial.number:03d}"
    values = {d.key: d.suggest(trial) for d in dimensions}
    config = trial_config(request, dimensions, values, run_dir)
    checkpoint = None
    if (run_dir / "last.pt").is_file():
        config, checkpoint = load_resume(run_dir)
    elif run_dir.exists():  # stopped before its first checkpoint: start it again
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"\n[trial {trial.number + 1}/{request.trials}] "
          + ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()), flush=True)  # fmt: skip
    data = tuning_data(config, request.holdout, data_cache)[0]
    reporter = _Reporter(trial, request.objective)
    try:
        train(config, run_dir, checkpoint=checkpoint, data=data, observers=[reporter])
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    except Diverged as error:
        trial.set_user_attr("note", "diverged")
        print(f"diverged: {error}", file=sys.stderr, flush=True)
        worst = math.inf if request.objective == "val_loss" else 0.0
        study.tell(trial, worst)
        return
    except Stuck as error:
        trial.set_user_attr("note", "stuck")
        print(f"warning: {error}", file=sys.stderr, flush=True)
    study.tell(trial, objective_value(run_metrics(run_dir), request.objective))


def trial_config(
    request: TuneRequest, dimensions: Sequence[Dimension], values: dict[str, Any], run_dir: Path
) -> Config:
    data = json.loads(json.dumps(request.base))
    apply(data, dimensions, values)
    apply_override(data, f"output.dir={json.dumps(str(run_dir.parent))}")
    apply_override(data, f"output.name={json.dumps(run_dir.name)}")
    if request.jobs > 1:  # the cores split between the processes
        threads = max(1, (os.cpu_count() or 1) // request.jobs)
        apply_override(data, f"train.threads={threads}")
    return validate(data, source=f"trial {run_dir.name}")


def objective_value(rows: Sequence[dict[str, float]], objective: str) -> float:
    """The best epoch's figure: the lowest validation loss or the highest accuracy."""
    values = [row[objective] for row in rows]
    if not values:
        return math.inf if objective == "val_loss" else 0.0
    return min(values) if objective == "val_loss" else max(values)


def tuning_data(
    config: Config, holdout: float, cache: dict[str, PreparedData]
) -> tuple[PreparedData, np.ndarray]:
    """The photos a trial trains and validates on, and the holdout rows it never sees.

    The holdout is a stratified share of the validation split, drawn with the run's seed; the
    photos are decoded once per data section (through the shared cache on disk).
    """
    section = config.data.model_dump(mode="json", exclude={"augment"})
    key = json.dumps([section, config.seed], sort_keys=True)
    if key not in cache:
        cache[key] = prepare_data(config, progress=config.train.progress)
    data = cache[key]
    if holdout == 0.0:
        return data, np.empty(0, dtype=np.int64)
    val = data.val_indices
    kept, held = stratified_split(data.images.labels[val], holdout, config.seed)
    tuning = PreparedData(data.images, data.train_indices, val[kept], data.mean, data.std)
    return tuning, val[held]


# --- running a whole tune -------------------------------------------------------------------------


def tune(folder: Path) -> TuneResult:
    """Run (or resume) the tune in `folder`, in --jobs processes, then write its results.

    Ctrl-C writes the results of the trials that finished and raises `Interrupted` naming the
    resume command.
    """
    request = load_request(folder)
    try:
        if request.jobs == 1:
            run_trials(folder)
        else:
            _run_workers(folder, request)
    except (Interrupted, KeyboardInterrupt) as error:
        code = error.exit_code if isinstance(error, Interrupted) else 128 + signal.SIGINT
        finish(folder)
        raise Interrupted(
            f"{signal.Signals(code - 128).name}: tune stopped; the {_count(folder)} finished "
            f"trials are in {folder / 'trials.csv'} and {folder / 'tune.png'}; "
            f"resume with: catdog tune --resume {folder}",
            code,
        ) from None
    return finish(folder)


def _run_workers(folder: Path, request: TuneRequest) -> None:
    """`jobs` processes, each running trials of the one study; the photos decoded here first."""
    config = validate(json.loads(json.dumps(request.base)), source="config")
    prepare_data(config, progress=config.train.progress)  # fills the shared cache once
    command = [sys.executable, "-m", "catdog", "tune", "--resume", str(folder)]
    workers = [
        subprocess.Popen([*command, "--worker", f"{w}/{request.jobs}"]) for w in range(request.jobs)
    ]
    try:
        codes = [worker.wait() for worker in workers]
    except KeyboardInterrupt:  # each worker writes its trial's last.pt, then stops
        for worker in workers:
            worker.send_signal(signal.SIGINT)
        codes = [worker.wait() for worker in workers]
        codes = [c if c > 128 else 128 + signal.SIGINT for c in codes]
    interrupted = [c for c in codes if c > 128]
    if interrupted:
        raise Interrupted("SIGINT: stopped", interrupted[0])
    if any(codes):
        raise ConfigError(f"tune: a worker process failed (exit codes {codes}); see above")


def _count(folder: Path) -> int:
    return sum(r.state in ("COMPLETE", "PRUNED") for r in records(folder))


def records(folder: Path) -> list[TrialRecord]:
    request = load_request(folder)
    study = open_study(request, folder)
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.number >= request.trials and t.state == optuna.trial.TrialState.FAIL:
            continue  # a race's surplus trial, never run
        run_dir = t.user_attrs.get("run_dir", "")
        rows = run_metrics(Path(run_dir)) if run_dir else []
        value = t.value
        if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        out.append(
            TrialRecord(
                number=t.number,
                state=t.state.name,
                value=value,
                epochs=len(rows),
                seconds=rows[-1]["elapsed"] if rows else 0.0,
                params=dict(t.params),
                run_dir=run_dir,
                note=t.user_attrs.get("note", ""),
            )
        )
    return out


def finish(folder: Path) -> TuneResult:
    """trials.csv, tune.png and best.yaml from the trials finished so far."""
    from catdog.plots import plot_tune
    from catdog.tune_report import holdout_measure, write_best, write_trials

    request = load_request(folder)
    dimensions = parse_space(request.space, request.base)
    done = records(folder)
    write_trials(done, dimensions, folder / "trials.csv")
    complete = [r for r in done if r.state == "COMPLETE" and r.value is not None]
    best = None
    if complete:
        sign = 1.0 if request.objective == "val_loss" else -1.0
        best = min(complete, key=lambda r: (sign * r.value, r.number))  # type: ignore[operator]
    plot_tune(done, dimensions, request.objective, folder / "tune.png", best)
    result = TuneResult(folder, done, best)
    if best is not None:
        write_best(request.base, dimensions, best.params, folder / "best.yaml")
        if request.holdout > 0:
            result.holdout = holdout_measure(Path(best.run_dir), request.holdout)
    return result
