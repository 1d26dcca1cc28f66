"""Issue 19, round two: the run-folder lock, signals before and after the loop, kill -9 in every
phase of a run, Ctrl-C while the console script starts, and two odd command lines.

Everything runs the real CLI in subprocesses and stops it with real signals. A signal is aimed at
a phase by watching what the run shows from outside (its stdout lines, its files, the cache's
temporary folder, the import log Python writes under PYTHONPROFILEIMPORTTIME), and the phase it
landed in is then checked from the files it left; every wait is bounded by a timeout.
"""

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from catdog import runs
from catdog.runs import read_metrics
from tests.helpers import (
    REPO,
    TINY_RUN,
    assert_one_error_line,
    catdog,
    weights,
    without_time,
    write_photo,
)

CATDOG_SCRIPT = Path(sys.executable).parent / "catdog"  # the installed console script

PHASE_RUN = [
    "--set", "data.image_size=32", "--set", "model.hidden=[1024]", "--set", "model.dropout=0.2",
    "--set", "optimizer.name=momentum", "--set", "train.batch_size=4", "--set", "train.epochs=3",
    "--set", "train.progress=false", "--set", "train.threads=1", "--set", "data.workers=0",
    "--set", "data.val_fraction=0.75", "--set", "eval.batch_size=1", "--set", "eval.tta=true",
]  # fmt: skip
"""3 epochs of 8 steps, with momentum and dropout (resume must restore both), 90 photos measured
one at a time and mirrored (a validation long enough to aim at), and 25 MB checkpoints (a write
long enough to land in)."""
EPOCHS = 3


# --- watching a run from outside ----------------------------------------------------------------


def wait_until(condition: Callable[[], object], timeout: float, what: str, poll: float = 0.005):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)
    return value


class Lines:
    """A stream read line by line on a thread, so that a test can wait for one line."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.queue.put(line)
        self.queue.put(None)

    def wait_for(self, match: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self.queue.put(None)
                break
            self.seen.append(line)
            if match(line):
                return line
        raise AssertionError(f"no such line within {timeout} s; saw {''.join(self.seen)[-3000:]}")

    def rest(self, timeout: float = 60) -> str:
        """Everything after what was seen, once the stream has ended."""
        deadline = time.monotonic() + timeout
        while (line := self.queue.get(timeout=max(0.01, deadline - time.monotonic()))) is not None:
            self.seen.append(line)
        self.queue.put(None)
        return "".join(self.seen)


@contextmanager
def started(*args: str | Path, env: dict[str, str] | None = None) -> Iterator:  # type: ignore[type-arg]
    """`catdog ARGS` running, its stdout and stderr read on threads; killed if still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "catdog", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    process.out, process.err = Lines(process.stdout), Lines(process.stderr)  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)


def epoch_line(epoch: int) -> Callable[[str], bool]:
    return lambda line: line.startswith(f"epoch {epoch:>3}/")


def metrics_rows(run_dir: Path) -> int:
    path = run_dir / runs.METRICS
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def completed_epochs(run_dir: Path) -> int | None:
    if not (run_dir / runs.LAST).is_file():
        return None
    return torch.load(run_dir / runs.LAST, weights_only=True)["progress"]["epoch"]


def slow_folder(folder: Path, count: int = 300) -> Path:
    """Many links to a few large photos: a first decode that takes seconds, on few bytes."""
    sources = [write_photo(folder.parent / f"src{i}.jpg", i, (1024, 768)) for i in range(8)]
    folder.mkdir()
    for i in range(count):
        (folder / f"{'cat' if i % 2 else 'dog'}.{i}.jpg").symlink_to(sources[i % 8])
    return folder


def decoding(cache: Path) -> bool:
    """A first decode is under way: its temporary entry folder exists in the cache."""
    return any(cache.glob("*.tmp-*/pixels.npy"))


def writing_a_checkpoint(run_dir: Path) -> bool:
    """A checkpoint write is under way (or was cut short): its temporary file exists."""
    return any(run_dir.glob(".*.pt.*.tmp"))


def imported(module: str) -> Callable[[str], bool]:
    """Matches the line of Python's import log (PYTHONPROFILEIMPORTTIME) that ends `module`."""
    return lambda line: line.rsplit("|", 1)[-1].strip() == module


def without_import_log(stderr: str) -> str:
    return "".join(line for line in stderr.splitlines(True) if not line.startswith("import time:"))


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]


# --- 1. one process trains a run folder ---------------------------------------------------------


def test_a_resume_of_a_run_still_training_is_refused_in_one_line(
    demo_photos: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "busy"
    args = ["--set", f"data.root={demo_photos}", "--set", f"output.dir={tmp_path}"]
    args += ["--set", "output.name=busy", *TINY_RUN, "--set", "train.epochs=1000"]
    args += ["--set", "train.batch_size=4"]
    with started("train", *args) as first:
        wait_until(lambda: (run_dir / runs.LAST).is_file(), 120, "the first epoch's last.pt")
        assert (run_dir / runs.LOCK).read_text().split() == [str(first.pid)]
        refused = catdog("train", "--resume", run_dir, timeout=120)
        assert_one_error_line(refused, f"{run_dir}: process {first.pid} is training this run now")
        assert first.poll() is None, "the first run must still be training"
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
        assert first.returncode == 128 + signal.SIGTERM, first.err.rest()
    done = completed_epochs(run_dir)
    assert done is not None and done >= 1
    # One writer: one row per epoch the first run finished, each once, in order.
    assert [int(row["epoch"]) for row in read_metrics(run_dir / runs.METRICS)] == list(
        range(1, done + 1)
    )
    assert not (run_dir / runs.LOCK).exists()  # released with the run
    again = catdog("train", "--resume", run_dir, "--set", f"train.epochs={done + 1}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(read_metrics(run_dir / runs.METRICS)) == done + 1


# --- 2. a signal before the loop leaves no run folder -------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_the_first_decode_leaves_no_folder_to_block_the_name(
    demo_photos: Path, tmp_path: Path, private_cache: Path, signum: int
) -> None:
    photos = slow_folder(tmp_path / "photos" / "slow")
    named = ["--set", f"output.dir={tmp_path / 'runs'}", "--set", "output.name=again"]
    with started("train", "--set", f"data.root={photos}", *named, *TINY_RUN) as process:
        wait_until(lambda: decoding(private_cache), 120, "the first decode", poll=0.01)
        process.send_signal(signum)
        process.wait(timeout=120)
        stderr = process.err.rest()
    assert process.returncode == 128 + signum, stderr[-3000:]
    assert_no_traceback(stderr)
    assert not (tmp_path / "runs" / "again").exists()
    retry = catdog("train", "--set", f"data.root={demo_photos}", *named, *TINY_RUN)
    assert retry.returncode == 0, retry.stderr[-3000:]
    assert (tmp_path / "runs" / "again" / runs.LAST).is_file()


# --- 3. a signal while curves.png is drawn ------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_plotting_says_the_run_is_complete(
    demo_photos: Path, tmp_path: Path, signum: int
) -> None:
    """The signal is aimed from outside at the drawing: Python's import log (stderr) says when
    catdog.plots, imported only to draw, has loaded, and the signal follows 0 to 0.1 s later.
    (A clock aim after the last epoch's line missed on a busy machine.) Each try is checked for
    the outcome of where it landed (still in the loop's end, in the plotting, or after the
    run); one of four must land in the plotting."""
    outcomes = []
    for attempt, delay in enumerate((0.0, 0.02, 0.05, 0.1)):
        run_dir = tmp_path / f"plot{attempt}"
        args = ["--set", f"data.root={demo_photos}", "--set", f"output.dir={tmp_path}"]
        args += ["--set", f"output.name={run_dir.name}", *TINY_RUN]
        with started("train", *args, env={"PYTHONPROFILEIMPORTTIME": "1"}) as process:
            process.err.wait_for(imported("catdog.plots"), timeout=120)
            time.sleep(delay)
            process.send_signal(signum)
            process.wait(timeout=120)
            stdout, stderr = process.out.rest(), without_import_log(process.err.rest())
        assert_no_traceback(stderr)
        assert completed_epochs(run_dir) == 2 and metrics_rows(run_dir) == 2
        if process.returncode == 0:  # the signal came too late, or before the loop had ended
            assert "run: " in stdout and (run_dir / runs.CURVES).is_file()
            outcomes.append(f"finished ({delay} s)")
            continue
        assert process.returncode == 128 + signum, stderr[-3000:]
        lines = [line for line in stderr.splitlines() if line.strip()]
        when = "after the last epoch" if "after the last epoch" in stderr else "while drawing"
        assert lines == [
            f"{signal.Signals(signum).name} {when}{' curves.png' * (when == 'while drawing')}: "
            f"the run is complete (2 epochs; metrics.csv, last.pt and best.pt are kept in "
            f"{run_dir}); only curves.png is missing"
        ], stderr[-3000:]
        assert not (run_dir / runs.CURVES).exists()
        outcomes.append("plotting" if when == "while drawing" else f"loop's end ({delay} s)")
        if when == "while drawing":
            break
    assert "plotting" in outcomes, outcomes


# --- 4. kill -9 in every phase ------------------------------------------------------------------


@pytest.fixture(scope="module")
def whole_run(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PHASE_RUN trained without interruption: what every killed and resumed run must equal."""
    folder = tmp_path_factory.mktemp("whole")
    result = catdog(
        "train", "--set", f"data.root={demo_photos}", "--set", f"output.dir={folder}",
        "--set", "output.name=whole", *PHASE_RUN,
        env={"CATDOG_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "cache")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "whole"


def reference_seconds(whole: Path) -> tuple[float, float]:
    """(the training seconds of epoch 2, the validation seconds of epoch 1) in the whole run."""
    rows = read_metrics(whole / runs.METRICS)
    return rows[1]["seconds"], rows[0]["elapsed"] - rows[0]["seconds"]


def kill_in_phase(phase: str, process, run_dir: Path, whole: Path, rng: random.Random) -> None:  # type: ignore[no-untyped-def]
    """Wait for `phase` of the run in `process` to begin, kill -9 at a random moment of it."""
    train_2, validation = reference_seconds(whole)
    if phase == "first epoch":
        process.out.wait_for(lambda line: line.lstrip().startswith("optimizer"), timeout=120)
        time.sleep(rng.uniform(0.0, 0.8 * train_2))
    elif phase == "validation":  # epoch 2's: after its steps, before its metrics row
        process.out.wait_for(epoch_line(1), timeout=120)
        time.sleep(train_2 + rng.uniform(0.2, 0.8) * validation)
    elif phase == "checkpoint write":  # an epoch's row is written just before its checkpoints
        # A write's temporary file lives a few milliseconds, too short to aim at by the clock
        # on a busy machine: wait for a random epoch's row, then kill on seeing the file.
        epoch = rng.randint(1, EPOCHS)
        wait_until(lambda: metrics_rows(run_dir) >= epoch, 120, f"epoch {epoch}'s row", poll=0.002)
        wait_until(
            lambda: process.poll() is not None or writing_a_checkpoint(run_dir),
            120,
            "a checkpoint's temporary file",
            poll=0.0005,
        )
    elif phase == "plotting":
        process.out.wait_for(epoch_line(EPOCHS), timeout=120)
        time.sleep(rng.uniform(0.0, 0.15))
    process.kill()
    process.wait(timeout=60)


def landed(phase: str, run_dir: Path, stdout: str) -> bool:
    """Whether the files left behind show the kill landed in `phase`."""
    if phase == "first epoch":  # trained (config.yaml is written) but no epoch finished
        return (run_dir / runs.CONFIG).is_file() and metrics_rows(run_dir) == 0
    if phase == "validation":  # epoch 1 recorded, epoch 2 not yet
        return metrics_rows(run_dir) == 1 and completed_epochs(run_dir) == 1
    if phase == "checkpoint write":  # a write cut short leaves its temporary file
        return writing_a_checkpoint(run_dir)
    assert phase == "plotting"  # the run complete, the summary after the plot not printed
    return completed_epochs(run_dir) == EPOCHS and "run: " not in stdout


PHASES = [
    pytest.param("first epoch", 0),
    pytest.param("validation", 0),
    pytest.param("checkpoint write", 0),
    pytest.param("plotting", 0),
    *(
        pytest.param(phase, seed, marks=pytest.mark.slow)
        for seed in (1, 2)
        for phase in ("validation", "checkpoint write", "plotting")
    ),
]


@pytest.mark.parametrize(("phase", "seed"), PHASES)
def test_kill_9_in_a_phase_then_the_next_command_ends_as_the_whole_run(
    demo_photos: Path, tmp_path: Path, whole_run: Path, phase: str, seed: int
) -> None:
    rng = random.Random(f"{phase}/{seed}")
    fresh = ["train", "--set", f"data.root={demo_photos}", "--set", f"output.dir={tmp_path}"]
    for attempt in range(4):  # a kill that missed its phase is tried again, at another moment
        run_dir = tmp_path / f"cut{attempt}"
        command = [*fresh, "--set", f"output.name={run_dir.name}", *PHASE_RUN]
        with started(*command) as process:
            kill_in_phase(phase, process, run_dir, whole_run, rng)
            stdout = process.out.rest()
        # 0: the run ended before the kill (its last write was missed), a try like any other
        assert process.returncode in (-signal.SIGKILL, 0), stdout[-3000:]
        if process.returncode == -signal.SIGKILL and landed(phase, run_dir, stdout):
            break
    else:
        pytest.fail(f"no kill of 4 landed in the {phase} phase")

    # The next command: resume what was saved, else the same command again.
    saved = (run_dir / runs.LAST).is_file()
    after = catdog("train", "--resume", run_dir) if saved else catdog(*command)
    assert after.returncode == 0, after.stderr[-3000:]
    assert_no_traceback(after.stderr)
    resumed, whole = weights(run_dir), weights(whole_run)
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)  # bitwise
    assert without_time(read_metrics(run_dir / runs.METRICS)) == without_time(
        read_metrics(whole_run / runs.METRICS)
    )
    assert (run_dir / runs.CURVES).is_file()
    assert not list(run_dir.glob(".*.tmp"))  # no checkpoint leftover stays behind


def test_kill_9_during_the_first_decode_then_the_same_command_trains(
    tmp_path: Path, private_cache: Path
) -> None:
    photos = slow_folder(tmp_path / "photos" / "slow", count=200)
    command = ["train", "--set", f"data.root={photos}", "--set", f"output.dir={tmp_path}"]
    command += ["--set", "output.name=decoded", *TINY_RUN]
    with started(*command) as process:
        wait_until(lambda: decoding(private_cache), 120, "the first decode", poll=0.01)
        time.sleep(random.Random(0).uniform(0.0, 0.3))
        assert decoding(private_cache)  # still decoding: nothing else has begun
        process.kill()
        process.wait(timeout=60)
    assert not (tmp_path / "decoded" / runs.CONFIG).exists()  # it died before training
    # --resume has nothing to continue, and says to run the same command again, which works.
    resumed = catdog("train", "--resume", tmp_path / "decoded")
    assert_one_error_line(resumed, "stopped before its first checkpoint", "start it again")
    again = catdog(*command, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "training into it afresh" in again.stderr
    assert completed_epochs(tmp_path / "decoded") == 2


# --- 5. Ctrl-C while the console script starts -------------------------------------------------


def console_script_train(tmp_path: Path, photos: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CATDOG_SCRIPT, "train", "--set", f"data.root={photos}", "--set",
         f"output.dir={tmp_path}", *TINY_RUN],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
    )  # fmt: skip


@pytest.mark.parametrize("delay", [0.05, 0.3])
def test_ctrl_c_while_the_console_script_starts_is_exit_130_without_a_traceback(
    demo_photos: Path, tmp_path: Path, delay: float
) -> None:
    """Wherever the signal lands (the delay's place depends on the machine's load), the answer
    is exit 130 and no traceback, except before the first line of catdog's own code runs: in
    the interpreter's start-up, or while the script's import is still finding the package (the
    traceback then names no file of the package), where nothing of catdog's can catch it."""
    assert CATDOG_SCRIPT.is_file(), f"the console script is not installed at {CATDOG_SCRIPT}"
    process = console_script_train(tmp_path, demo_photos)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    package = str(Path(runs.__file__).parent)
    if "Traceback" in stderr and package not in stderr.split("Traceback", 1)[1]:
        pytest.xfail("landed before the first line of catdog's code ran")
    assert_no_traceback(stderr)
    assert process.returncode == 130, stderr[-3000:]


def interrupted_after_import(tmp_path: Path, photos: Path, module: str) -> tuple[int, str]:
    """SIGINT the console script the moment Python's import log says `module` was imported."""
    process = console_script_train(tmp_path, photos, PYTHONPROFILEIMPORTTIME="1")
    err = Lines(process.stderr)
    try:
        err.wait_for(imported(module), timeout=120)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
    return process.returncode, without_import_log(err.rest())


@pytest.mark.parametrize(
    "module",
    [
        "typer",  # catdog.cli is importing: the console script guards it
        "numpy._globals",  # numpy's import has begun: catdog imports it before torch does
        "numpy",
        "torch",
    ],
)
def test_ctrl_c_at_each_import_of_the_console_script(
    demo_photos: Path, tmp_path: Path, module: str
) -> None:
    code, stderr = interrupted_after_import(tmp_path, demo_photos, module)
    assert_no_traceback(stderr)
    assert code == 130, stderr[-3000:]


# --- 6. odd command lines -----------------------------------------------------------------------


def test_resume_of_the_last_pt_file_trains_on_into_its_run(
    demo_photos: Path, tmp_path: Path
) -> None:
    common = ["--set", f"data.root={demo_photos}", "--set", f"output.dir={tmp_path}", *TINY_RUN]
    whole = catdog("train", *common, "--set", "output.name=whole", "--set", "train.epochs=3")
    assert whole.returncode == 0, whole.stderr[-3000:]
    part = catdog("train", *common, "--set", "output.name=part")
    assert part.returncode == 0, part.stderr[-3000:]
    run_dir = tmp_path / "part"
    resumed = catdog("train", "--resume", run_dir / runs.LAST, "--set", "train.epochs=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"run: {run_dir} " in resumed.stdout
    assert (run_dir / runs.LAST).is_file() and completed_epochs(run_dir) == 3
    assert len(read_metrics(run_dir / runs.METRICS)) == 3
    resumed, whole_weights = weights(run_dir), weights(tmp_path / "whole")
    assert all(torch.equal(resumed[k], whole_weights[k]) for k in whole_weights)


def test_compare_with_a_target_loss_of_nan_is_one_line(tmp_path: Path) -> None:
    result = catdog(
        "compare", REPO / "configs" / "demo.yaml", "--target-loss", "nan",
        "--out-dir", tmp_path, "--name", "c",
    )  # fmt: skip
    assert_one_error_line(result, "--target-loss nan", "positive, finite")
    assert list(tmp_path.iterdir()) == []
