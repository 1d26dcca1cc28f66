"""Running a comparison's runs: over seeds, in one process or several, through Ctrl-C and resume.

    <comparison>/
        comparison.yaml   every run to do (folder, label, group, seed, resolved config): the plan
        done.yaml         each finished run's outcome (learned, diverged or stuck), as it ends
        tune-NN-.../      with --tune: each planned run's tune, whose best config the seeds run
        NN-label[-seedS]/ one run folder per run
        comparison.png, summary.md, summary.csv (+ aggregate.csv over seeds)

`--seeds 0,1,2` repeats every planned run under each seed; seed s is the same split and the
same initial weights for every run of one architecture, so runs pair by seed. Seeds go outer:
after a Ctrl-C the finished runs are whole seeds where possible.

Ctrl-C finishes the current step of every run in flight, which writes its `last.pt`; then the
summary and chart of the finished runs are written and `Interrupted` names
`catdog compare --resume DIR`. A resume skips what is in done.yaml, continues the interrupted
runs from their `last.pt` (bitwise, on the CPU), starts the rest, and ends with the same summary
as an uninterrupted comparison.

`--jobs N` trains the runs in N processes (`catdog train` each, its output in the run's
train.log), the photos decoded here first so that every process reads them from the cache, and
the cores split between the processes (train.threads = cores / N, unless the config sets it).
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from catdog.config import Config, config_dict, save_config, validate
from catdog.errors import ConfigError, Diverged, Interrupted, Stuck
from catdog.runs import LAST, load_resume, run_metrics
from catdog.scoreboard import RunResult, Scoreboard, score, write_scoreboard

PLAN = "comparison.yaml"
HOLDOUT = "holdout.csv"  # compare --tune --holdout: each best trial on the held-out photos
DONE = "done.yaml"


@dataclass
class Job:
    """One run of the comparison: a planned run under one seed."""

    folder: str
    label: str
    group: str
    seed: int | None
    config: dict[str, Any]
    """The resolved config, with output.dir/name pointing at this run's folder."""

    def settings(self, source: str) -> Config:
        return validate(json.loads(json.dumps(self.config)), source=source)


def parse_seeds(text: str | None) -> list[int] | None:
    """`--seeds 0,1,2` (these seeds) or `--seeds 5` (0 to 4); None when not given."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(
            f"--seeds {text}: give a count (--seeds 5 for 0-4) or seeds (--seeds 0,1,2)"
        ) from None
    if len(values) == 1:
        if values[0] < 1:
            raise ConfigError(f"--seeds {text}: give at least 1 seed")
        return list(range(values[0]))
    if len(set(values)) < len(values):
        twice = sorted({v for v in values if values.count(v) > 1})
        raise ConfigError(f"--seeds {text}: seed {twice[0]} is given twice; give each seed once")
    if any(v < 0 for v in values):
        raise ConfigError(f"--seeds {text}: seeds are integers from 0")
    return values


def jobs_for(planned: Sequence[Any], folder: Path, seeds: list[int] | None) -> list[Job]:
    """The runs to do, seeds outer: every planned run of seed 0, then of seed 1, ..."""
    jobs = []
    for seed in seeds if seeds is not None else [None]:
        for run in planned:
            config = run.config
            name = run.folder if seed is None else f"{run.folder}-seed{seed}"
            if seed is not None:
                config = config.model_copy(update={"seed": seed})
            data = config_dict(config)
            data["output"] = {**data["output"], "dir": str(folder), "name": name}
            label = run.label if seed is None else f"{run.label}, seed={seed}"
            jobs.append(Job(name, label, run.label, config.seed, data))
    return jobs


def save_plan(folder: Path, jobs: Sequence[Job], settings: dict[str, Any]) -> None:
    state = {"settings": settings, "runs": [job.__dict__ for job in jobs]}
    (folder / PLAN).write_text(yaml.safe_dump(state, sort_keys=False))


def load_plan(folder: Path) -> tuple[list[Job], dict[str, Any]]:
    path = folder / PLAN
    if not path.is_file():
        raise ConfigError(
            f"--resume {folder}: not a comparison folder (no {PLAN}); give the folder "
            "`catdog compare` printed"
        )
    state = yaml.safe_load(path.read_text())
    return [Job(**job) for job in state["runs"]], state["settings"]


def outcomes(folder: Path) -> dict[str, dict[str, str | None]]:
    path = folder / DONE
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _record(folder: Path, job: Job, diverged: str | None, stuck: str | None) -> None:
    done = outcomes(folder)
    done[job.folder] = {"diverged": diverged, "stuck": stuck}
    partial = folder / f"{DONE}.part"
    partial.write_text(yaml.safe_dump(done, sort_keys=False))
    partial.replace(folder / DONE)  # atomic: a kill never leaves half a file


# --- running ----------------------------------------------------------------------------------


def run_all(folder: Path, jobs: Sequence[Job], processes: int = 1) -> None:
    """Train every job not yet done; Ctrl-C raises `Interrupted` after the in-flight runs
    wrote their last.pt."""
    todo = [job for job in jobs if job.folder not in outcomes(folder)]
    if processes == 1:
        _run_here(folder, todo)
    else:
        _run_in_processes(folder, todo, processes)


def _run_here(folder: Path, todo: Sequence[Job]) -> None:
    from catdog.compare import shared_data
    from catdog.train import train

    prepared: dict[str, Any] = {}
    for index, job in enumerate(todo, start=1):
        print(f"\n[{index}/{len(todo)}] {job.label}", flush=True)
        run_dir = folder / job.folder
        config, checkpoint = _start_or_resume(job, run_dir)
        diverged = stuck = None
        try:
            train(config, run_dir, checkpoint=checkpoint, data=shared_data(config, prepared))
        except Diverged as error:
            diverged = str(error)
            print(f"diverged: {diverged}", file=sys.stderr, flush=True)
        except Stuck as error:
            stuck = str(error)
            print(f"stuck: {stuck}", file=sys.stderr, flush=True)
        _record(folder, job, diverged, stuck)


def _start_or_resume(job: Job, run_dir: Path) -> tuple[Config, dict[str, Any] | None]:
    """A run's config and, for one interrupted earlier, its last.pt; a run stopped before its
    first checkpoint starts again."""
    if (run_dir / LAST).is_file():
        return load_resume(run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    return job.settings(f"{run_dir}"), None


def _run_in_processes(folder: Path, todo: Sequence[Job], processes: int) -> None:
    from catdog.builders import prepare_data

    threads = max(1, (os.cpu_count() or 1) // processes)
    seen: set[str] = set()
    for job in todo:  # decode each distinct photo set once, into the shared cache
        config = job.settings(job.folder)
        key = json.dumps(config.data.model_dump(mode="json", exclude={"augment"}), sort_keys=True)
        if key not in seen:
            seen.add(key)
            prepare_data(config, progress=config.train.progress)
    waiting = list(todo)
    running: dict[subprocess.Popen[bytes], Job] = {}
    try:
        while waiting or running:
            while waiting and len(running) < processes:
                job = waiting.pop(0)
                running[_launch(folder, job, threads)] = job
                print(f"started: {job.label}", flush=True)
            time.sleep(0.05)
            for process in [p for p in running if p.poll() is not None]:
                _finished(folder, running.pop(process), process.returncode)
    except (KeyboardInterrupt, Interrupted):
        for process in running:
            process.send_signal(signal.SIGINT)  # each writes its last.pt and stops
        for process in running:
            process.wait()
        raise Interrupted("SIGINT: stopped", 128 + signal.SIGINT) from None


def _launch(folder: Path, job: Job, threads: int) -> subprocess.Popen[bytes]:
    run_dir = folder / job.folder
    command = [sys.executable, "-m", "catdog", "train"]
    if (run_dir / LAST).is_file():
        command += ["--resume", str(run_dir), "--set", "train.progress=false"]
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        config = job.settings(job.folder)
        if config.train.threads is None:
            config = config.model_copy(
                update={"train": config.train.model_copy(update={"threads": threads})}
            )
        config = config.model_copy(
            update={"train": config.train.model_copy(update={"progress": False})}
        )
        folder.joinpath(".configs").mkdir(exist_ok=True)
        path = folder / ".configs" / f"{job.folder}.yaml"
        save_config(config, path)
        command += ["--config", str(path)]
    log = (folder / f".{job.folder}.log").open("ab")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _finished(folder: Path, job: Job, code: int) -> None:
    log = folder / f".{job.folder}.log"
    last = (log.read_text(errors="replace").strip().splitlines() or [""])[-1]
    if code in (0, 3, 4):
        diverged = last if code == 3 else None
        stuck = last if code == 4 else None
        _record(folder, job, diverged, stuck)
        word = {0: "finished", 3: "diverged", 4: "stuck"}[code]
        print(f"{word}: {job.label}", flush=True)
        return
    if code > 128 or code < 0:
        raise Interrupted("SIGINT: stopped", 128 + signal.SIGINT)
    raise ConfigError(f"{job.label}: its training process failed (exit {code}): {last}")


# --- the summary ------------------------------------------------------------------------------


def summarize(
    folder: Path, jobs: Sequence[Job], target_loss: float | None, log_y: bool = False
) -> Scoreboard:
    """comparison.png, summary.md and summary.csv of the runs done so far."""
    from catdog.plots import Curve, plot_comparison
    from catdog.step_log import STEPS, read_steps

    done = outcomes(folder)
    finished = [job for job in jobs if job.folder in done]
    results = [
        RunResult(
            job.label,
            folder / job.folder,
            run_metrics(folder / job.folder),
            done[job.folder].get("diverged"),
            done[job.folder].get("stuck"),
            job.group,
            job.seed,
        )
        for job in finished
    ]
    board = score(results, target_loss)
    curves = []
    for group in board.groups:
        members = [r for r in results if r.group == group.label]
        steps = [read_steps(r.run_dir / STEPS) for r in members if (r.run_dir / STEPS).is_file()]
        failed = "diverged" if group.diverged else "stuck" if group.stuck else ""
        curves.append(
            Curve(group.label, members[0].rows, [m.rows for m in members if m.rows], steps, failed)
        )
    plot_comparison(curves, folder / "comparison.png", folder.name, board.target_loss, log_y)
    write_scoreboard(board, folder)
    return board


# --- tuning first (compare --tune) --------------------------------------------------------------


def tune_each(folder: Path, settings: dict[str, Any]) -> list[Any]:
    """Tune every planned run with the same budget, each in `tune-<run>/` (resumed if begun);
    the planned runs with their best configs (a run whose trials all failed keeps its own)."""
    from catdog.compare import PlannedRun
    from catdog.config_yaml import read_config_file
    from catdog.tune import TuneRequest, prepare, tune

    tuning = settings["tune"]
    planned, held = [], []
    for index, run in enumerate(settings["planned"], start=1):
        place = folder / f"tune-{run['folder']}"
        if not (place / "tune.yaml").is_file():
            request = TuneRequest(
                base=run["config"], space=tuning["space"], trials=tuning["trials"],
                objective=tuning["objective"], study_name=run["folder"],
                holdout=tuning.get("holdout", 0.0),
            )  # fmt: skip
            prepare(request, place)
        print(f"\n[tune {index}/{len(settings['planned'])}] {run['label']}: {place}", flush=True)
        result = tune(place)
        config, label = validate(run["config"], source=run["label"]), run["label"]
        if result.best is not None:
            best = read_config_file(place / "best.yaml")
            best["output"] = run["config"].get("output", {})
            config = validate(best, source=str(place / "best.yaml"))
            label = tuned_label(label, result.best.params)
        if result.holdout:
            held.append({"run": label, **result.holdout})
            print(
                f"best trial on the {result.holdout['count']} holdout photos: accuracy "
                f"{result.holdout['accuracy']:.2%}, loss {result.holdout['loss']:.4f}",
                flush=True,
            )
        planned.append(PlannedRun(config, label, run["folder"]))
    if held:  # each run's best trial, on photos none of its trials saw
        with (folder / HOLDOUT).open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=["run", "count", "accuracy", "loss"])
            writer.writeheader()
            writer.writerows({key: row[key] for key in writer.fieldnames} for row in held)
    return planned


def tuned_label(label: str, params: dict[str, Any]) -> str:
    """The planned run's label with each searched key's planned value replaced by a note of the
    value its tune chose: `optimizer.name=sgd, optimizer.lr=0.1` → `optimizer.name=sgd, tuned
    optimizer.lr=0.117`, so the tables name what was trained."""
    for key in params:  # a planned value is a scalar, or a list in brackets
        label = re.sub(rf"(^|, ){re.escape(key)}=(\[[^\]]*\]|[^,]*)", "", label)
    shown = ", ".join(
        f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in params.items()
    )
    label = label.strip(", ")
    return f"{label}, tuned {shown}" if label else f"tuned {shown}"
