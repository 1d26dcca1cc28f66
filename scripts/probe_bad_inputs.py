"""Run catdog on hostile inputs (issue 19's list) and count those handled as promised.

Handled: exit 2 (or 0 where the input is valid) with one `error:` line and no traceback, within
its time limit. Usage: python scripts/probe_bad_inputs.py [WORK_DIR]; prints one row per case
and the total. It trains only tiny networks on 40 demo photos, with one thread.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

PY = sys.executable
TINY = [
    "--set", "data.image_size=8", "--set", "model.hidden=[8]", "--set", "train.epochs=1",
    "--set", "train.progress=false", "--set", "data.workers=0", "--set", "train.threads=1",
]  # fmt: skip


def catdog(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "catdog", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def handled(result: subprocess.CompletedProcess[str], ok: tuple[int, ...]) -> tuple[bool, str]:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    good = (
        result.returncode in ok
        and "Traceback" not in result.stderr
        and (result.returncode != 2 or len(errors) == 1)
        and "NaN" not in result.stdout
    )
    return good, (errors[0] if errors else (lines[-1] if lines else ""))[:150]


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="probe-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["CATDOG_CACHE_DIR"] = str(work / "cache")
    demo = work / "demo"
    if not demo.exists():
        subprocess.run(
            [PY, "-m", "catdog", "make-demo-data", demo, "--per-class", "20"], check=True
        )
    runs = work / "runs"
    base = ["train", "--set", f"data.root={demo}", "--set", f"output.dir={runs}", *TINY]
    good_run = runs / "good"
    if not good_run.exists():
        subprocess.run([PY, "-m", "catdog", *base, "--set", "output.name=good"], check=True)
    files = work / "files"
    files.mkdir(exist_ok=True)
    (files / "laughs.yaml").write_text(
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(
            f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        )
    )
    (files / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (files / "latin1.yaml").write_bytes("output:\n  name: caf\xe9\n".encode("latin-1"))
    (files / "deep.yaml").write_text("[" * 5000 + "]" * 5000)
    (files / "dup.yaml").write_text("optimizer:\n  lr: 0.1\n  lr: 0.2\n")
    (files / "nul.yaml").write_text('output:\n  name: "a\\0b"\n')
    (files / "a-file").write_text("x")
    (files / "folder.yaml").mkdir(exist_ok=True)
    forged = _forged_checkpoints(good_run, files)
    cases: list[tuple[str, list[object], tuple[int, ...]]] = [
        ("billion laughs", [*base, "--config", files / "laughs.yaml"], (2,)),
        ("--config /dev/zero", [*base, "--config", "/dev/zero"], (2,)),
        ("binary config", [*base, "--config", files / "binary.yaml"], (2,)),
        ("Latin-1 config", [*base, "--config", files / "latin1.yaml"], (2,)),
        ("YAML nested 5,000 deep", [*base, "--config", files / "deep.yaml"], (2,)),
        ("duplicate YAML key", [*base, "--config", files / "dup.yaml"], (2,)),
        ("config is a folder", [*base, "--config", files / "folder.yaml"], (2,)),
        ("seed -1", [*base, "--set", "seed=-1"], (2,)),
        ("seed 2**64", [*base, "--set", f"seed={2**64}"], (2,)),
        ("model.hidden=[100000000]", [*base, "--set", "model.hidden=[100000000]"], (2,)),
        ("model.ensemble=100000000", [*base, "--set", "model.ensemble=100000000"], (2,)),
        ("train.threads=100000", [*base, "--set", "train.threads=100000"], (2,)),
        ("mixup=.inf", [*base, "--set", "data.augment.mixup=.inf"], (2,)),
        ("output.dir a file", [*base, "--set", f"output.dir={files / 'a-file'}"], (2,)),
        ("output.dir below a file", [*base, "--set", f"output.dir={files / 'a-file' / 'x'}"], (2,)),
        ("output.name a/b", [*base, "--set", "output.name=a/b"], (2,)),
        ("output.name NUL", [*base, "--config", files / "nul.yaml"], (2,)),
        ("output.name 300 chars", [*base, "--set", f"output.name={'x' * 300}"], (2,)),
        ("output.name ../../x", [*base, "--set", "output.name=../../x"], (2,)),
        ("output.name absolute", [*base, "--set", f"output.name={work / 'abs'}"], (2,)),
        ("cache dir a file", [*base, "--set", f"data.cache_dir={files / 'a-file'}"], (2,)),
        ("evaluate --device bogus", ["evaluate", good_run, "--device", "bogus"], (2,)),
        ("evaluate RUN/last.pt", ["evaluate", good_run / "last.pt"], (0,)),
        ("--resume RUN/last.pt", ["train", "--resume", good_run / "last.pt"], (0,)),
        ("compare --name ../../x", ["compare", "--name", "../../x"], (2,)),
        ("compare --target-loss nan", ["compare", "--target-loss", "nan"], (2,)),
        ("make-demo-data --seed -1", ["make-demo-data", work / "d1", "--seed", "-1"], (2,)),
        ("make-demo-data over photos", ["make-demo-data", demo, "--per-class", "2"], (2,)),
        ("make-demo-data a file", ["make-demo-data", files / "a-file"], (2,)),
        *[(f"evaluate {name}", ["evaluate", path], (2,)) for name, path in forged.items()],
    ]
    passed = 0
    for name, args, ok in cases:
        try:
            good, line = handled(catdog(*args), ok)
        except subprocess.TimeoutExpired:
            good, line = False, "timed out"
        passed += good
        print(f"{'ok ' if good else 'BAD'}  {name:32s} {line}", flush=True)
    print(f"\nhandled {passed} of {len(cases)}")


def _forged_checkpoints(run: Path, folder: Path) -> dict[str, Path]:
    good = torch.load(run / "best.pt", weights_only=True)
    forged = {}

    def save(name: str, change) -> None:  # type: ignore[no-untyped-def]
        payload = {
            **good,
            "config": dict(good["config"]),
            "normalization": dict(good["normalization"]),
        }
        payload["config"]["model"] = dict(good["config"]["model"])
        payload["config"]["data"] = dict(good["config"]["data"])
        change(payload)
        path = folder / f"{name.replace(' ', '-')}.pt"
        torch.save(payload, path)
        forged[name] = path

    save("checkpoint hidden=[100000000]", lambda p: p["config"]["model"].update(hidden=[10**8]))
    save("checkpoint ensemble=10**8", lambda p: p["config"]["model"].update(ensemble=10**8))
    save("weights not its config", lambda p: p["config"]["model"].update(hidden=[9]))
    save("no normalization.mean", lambda p: p["normalization"].pop("mean"))
    return forged


if __name__ == "__main__":
    main()
