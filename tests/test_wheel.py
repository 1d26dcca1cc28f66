"""The built wheel, installed in a fresh virtual environment outside the clone, has its configs:
`catdog configs` lists them and `catdog demo` runs from an empty folder.

The fresh environment borrows this one's packages (torch is gigabytes) through a .pth line,
and gets catdog itself only from the wheel (`pip install --no-deps`).
"""

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO


def run(*command: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=env,
    )


@pytest.mark.slow
def test_installed_wheel_has_its_configs_and_runs_the_demo_anywhere(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        "--wheel-dir",
        dist,
        REPO,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("catdog-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(
        (p.name for p in (REPO / "catdog" / "configs").glob("*.yaml")), key=lambda n: Path(n).stem
    )
    in_wheel = [n.split("/")[-1] for n in names if n.startswith("catdog/configs/")]
    assert sorted(in_wheel) == sorted(shipped)

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path).returncode == 0
    python = venv / "bin" / "python"
    purelib = run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
    ).stdout.strip()
    Path(purelib, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--no-deps",
        wheel,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(python, "-c", "import catdog; print(catdog.__file__)", cwd=elsewhere)
    assert where.stdout.startswith(purelib), where.stdout  # the wheel's, not the clone's
    catdog = venv / "bin" / "catdog"

    listed = run(catdog, "configs", cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        Path(name).stem for name in shipped
    ]

    demo = run(
        catdog, "demo", "--per-class", "40",
        "--set", "train.epochs=1", "--set", "data.image_size=16", "--set", "model.hidden=[16]",
        "--set", "train.progress=false", "--set", "data.workers=0",
        cwd=elsewhere,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    assert "demo run:" in demo.stdout
    assert len(list((elsewhere / "data" / "demo").glob("*.jpg"))) == 80
    (run_dir,) = (elsewhere / "runs").iterdir()
    assert (run_dir / "best.pt").is_file()
