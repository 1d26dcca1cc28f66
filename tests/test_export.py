"""`catdog export`: onnxruntime and TorchScript, in a fresh process, agree with catdog to 1e-5."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from catdog.images import decode_photo
from tests.helpers import REPO, TINY_RUN, catdog

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

# Runs in a fresh interpreter with no catdog: what a user shipping the files would run.
STANDALONE = """
import json, sys
import numpy as np
pixels = np.load(sys.argv[1])
import onnxruntime
session = onnxruntime.InferenceSession(sys.argv[2])
onnx_p = session.run(None, {"pixels": pixels})[0]
import torch
scripted = torch.jit.load(sys.argv[3])
with torch.no_grad():
    script_p = scripted(torch.from_numpy(pixels)).numpy()
assert not any(name.startswith("catdog") for name in sys.modules)
print(json.dumps({"onnx": onnx_p.tolist(), "torchscript": script_p.tolist(),
                  "input": [str(d) for d in session.get_inputs()[0].shape]}))
"""


def train(config: str, demo_photos: Path, runs: Path, name: str) -> Path:
    result = catdog(
        "train", "--config", REPO / "configs" / config,
        "--set", f"data.root={demo_photos}",
        "--set", f"output.dir={runs}", "--set", f"output.name={name}", *TINY_RUN,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return runs / name


@pytest.fixture(scope="module")
def runs(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("runs")
    return {
        "plain": train("demo.yaml", demo_photos, folder, "plain"),
        # The default recipe: 8 networks, batch norm, ZCA whitening (at a tiny width).
        "default": train("default.yaml", demo_photos, folder, "default"),
    }


def real_sample(real_photos: Path, tmp_path: Path) -> list[Path]:
    folder = tmp_path / "photos"
    folder.mkdir()
    names = [f"{kind}.{k}.jpg" for k in (1, 2, 3, 4) for kind in ("cat", "dog")]
    return [Path(shutil.copyfile(real_photos / n, folder / n)) for n in names]


def catdog_p_dog(run: Path, photos: list[Path], *options: str) -> np.ndarray:
    result = catdog("predict", run, *photos, "--format", "json", *options)
    assert result.returncode == 0, result.stderr
    return np.array([row["p_dog"] for row in json.loads(result.stdout)])


@pytest.mark.parametrize("recipe", ["plain", "default"])
def test_exported_networks_give_catdogs_answers(
    recipe: str, runs: dict[str, Path], real_photos: Path, tmp_path: Path
) -> None:
    run = runs[recipe]
    if recipe == "default":
        text = (run / "config.yaml").read_text()
        assert "ensemble: 8" in text and "batch_norm: true" in text and "zca" in text
    photos = real_sample(real_photos, tmp_path)
    onnx_file, script_file = tmp_path / "net.onnx", tmp_path / "net.torchscript.pt"
    for file, kind in ((onnx_file, "onnx"), (script_file, "torchscript")):
        result = catdog("export", run, "--format", kind, "--out", file)
        assert result.returncode == 0, result.stderr
        assert f"wrote {file}" in result.stdout and "(N, 3, 16, 16)" in result.stdout
    pixels = np.stack([decode_photo(photo, 16, False) for photo in photos])
    np.save(tmp_path / "pixels.npy", pixels)
    fresh = subprocess.run(
        [sys.executable, "-c", STANDALONE, tmp_path / "pixels.npy", onnx_file, script_file],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},  # no PYTHONPATH: the checkout is not importable
    )
    assert fresh.returncode == 0, fresh.stderr
    answers = json.loads(fresh.stdout)
    assert answers["input"][1:] == ["3", "16", "16"]
    expected = catdog_p_dog(run, photos)  # both with the run's own test-time views, if any
    np.testing.assert_allclose(answers["onnx"], expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(answers["torchscript"], expected, rtol=0, atol=1e-5)
    assert np.ptp(expected) > 0  # distinct photos, distinct answers: not a constant


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--tta", "--tta-shift", "0"], "(mirror: 2 views)"),
        (["--no-tta", "--tta-shift", "2"], "(shifts of up to 2 px: 25 views)"),
        ([], "(mirror, shifts of up to 2 px: 50 views)"),  # the default's eval.tta, tta_shift
    ],
)
def test_test_time_views_fold_in_too(
    options: list[str], says: str, runs: dict[str, Path], real_photos: Path, tmp_path: Path
) -> None:
    import onnxruntime
    import torch

    photos = real_sample(real_photos, tmp_path)
    pixels = np.stack([decode_photo(p, 16, False) for p in photos])
    expected = catdog_p_dog(runs["default"], photos, *options)
    assert not np.allclose(expected, catdog_p_dog(runs["default"], photos, "--no-tta"), atol=1e-4)
    onnx_file, script_file = tmp_path / "tta.onnx", tmp_path / "tta.torchscript.pt"
    for file, kind in ((onnx_file, "onnx"), (script_file, "torchscript")):
        result = catdog("export", runs["default"], "--format", kind, *options, "--out", file)
        assert result.returncode == 0, result.stderr
        assert "TTA folded in" in result.stdout and says in result.stdout
    with torch.no_grad():
        scripted = torch.jit.load(str(script_file))(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(scripted, expected, rtol=0, atol=1e-5)
    session = onnxruntime.InferenceSession(str(onnx_file))
    np.testing.assert_allclose(session.run(None, {"pixels": pixels})[0], expected, atol=1e-5)


def test_the_readme_example_labels_a_photo_without_catdog(
    runs: dict[str, Path], real_photos: Path, tmp_path: Path
) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Use a trained network") :]
    example = re.search(r"```python\n(.*?)```", section, re.S)
    assert example is not None, "the README's section has no python example"
    assert len(example.group(1).strip().splitlines()) <= 12
    model = tmp_path / "best.onnx"
    assert catdog("export", runs["default"], "--format", "onnx", "--out", model).returncode == 0
    photo = Path(shutil.copyfile(real_photos / "dog.7.jpg", tmp_path / "dog.7.jpg"))
    script = tmp_path / "label_photo.py"
    script.write_text(example.group(1))
    result = subprocess.run(
        [sys.executable, script, model, photo],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    expected = float(catdog_p_dog(runs["default"], [photo])[0])  # the run's views, as exported
    printed = re.search(r"(cat|dog) \(P\(dog\) = ([0-9.]+)\)", result.stdout)
    assert printed is not None, result.stdout
    assert printed.group(1) == ("dog" if expected >= 0.5 else "cat")
    assert float(printed.group(2)) == pytest.approx(expected, abs=1e-3)


def test_export_bad_input_is_one_line_and_writes_nothing(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copyfile(runs["plain"] / "last.pt", unfinished / "last.pt")
    cases = [
        (["export", unfinished, "--format", "onnx"], [str(unfinished), "best.pt"]),
        (["export", runs["plain"], "--format", "keras"], ["--format keras", "onnx"]),
        (["export", runs["plain"], "--format", "onnx", "--out", tmp_path / "no" / "x.onnx"],
         ["no such folder"]),
    ]  # fmt: skip
    existing = tmp_path / "existing.onnx"
    existing.write_text("mine")
    cases.append((["export", runs["plain"], "--format", "onnx", "--out", existing], ["--force"]))
    for args, words in cases:
        result = catdog(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert all(word in lines[0] for word in words), lines[0]
    assert sorted(p.name for p in unfinished.iterdir()) == ["last.pt"]
    assert existing.read_text() == "mine"
    assert not (tmp_path / "no").exists()
