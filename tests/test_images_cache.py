"""load_images: decode once, cache on disk, reuse, invalidate, survive crashes and races."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import catdog
from catdog.data import DataError, PhotoSet, find_photos, label_from_name
from catdog.images import (
    DecodedImages,
    UnreadablePhotoError,
    decode_photo,
    default_cache_dir,
    load_images,
)

REPO_ROOT = Path(catdog.__file__).resolve().parents[1]
SIZE = 16


def write_photo(path: Path, seed: int, size: tuple[int, int] = (48, 36)) -> Path:
    rng = np.random.default_rng(seed)
    width, height = size
    ramp = np.linspace(0, 200, width)[None, :, None] * rng.random(3)
    pixels = np.clip(ramp + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def make_folder(folder: Path, count: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_photo(folder / f"{'cat' if i % 2 == 0 else 'dog'}.{i}.jpg", seed=i)
    return folder


def load(folder: Path, cache: Path, **options) -> DecodedImages:
    options = {"image_size": SIZE, "grayscale": False, "workers": 0, "progress": False} | options
    return load_images(find_photos(folder), cache_dir=cache, **options)


def entries(cache: Path) -> list[str]:
    """What the cache folder holds, lock files aside."""
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))


def fresh_decode(paths: list[Path], grayscale: bool = False) -> np.ndarray:
    return np.stack([decode_photo(p, SIZE, grayscale) for p in paths])


def test_first_load_decodes_and_caches(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos")
    images = load(folder, tmp_path / "cache")
    assert images.decoded == 8
    assert isinstance(images.pixels, np.memmap)
    assert images.pixels.shape == (8, 3, SIZE, SIZE) and images.pixels.dtype == np.uint8
    assert images.cache_file.is_file() and images.cache_file.parent.parent == tmp_path / "cache"
    assert images.skipped == []
    assert np.array_equal(images.pixels, fresh_decode(find_photos(folder).paths))
    assert images.labels.tolist() == [0] * 4 + [1] * 4  # cats sort first


def test_second_load_reads_the_cache_without_decoding(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos")
    first = load(folder, tmp_path / "cache")
    written = first.cache_file.stat()
    second = load(folder, tmp_path / "cache")
    assert second.decoded == 0
    assert second.cache_file == first.cache_file
    again = second.cache_file.stat()
    assert (again.st_ino, again.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert np.array_equal(first.pixels, second.pixels)
    assert second.paths == first.paths and np.array_equal(second.labels, first.labels)


def test_cached_pixels_are_read_only(tmp_path: Path) -> None:
    images = load(make_folder(tmp_path / "photos"), tmp_path / "cache")
    with pytest.raises(ValueError, match="read-only"):
        images.pixels[0, 0, 0, 0] = 1


def test_process_pool_matches_in_process_decoding(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos", count=40)
    pooled = load(folder, tmp_path / "a", workers=2)
    single = load(folder, tmp_path / "b", workers=0)
    assert pooled.decoded == single.decoded == 40
    assert np.array_equal(pooled.pixels, single.pixels)
    assert np.array_equal(pooled.pixels, fresh_decode(find_photos(folder).paths))


def test_grayscale_cache(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos")
    images = load(folder, tmp_path / "cache", grayscale=True)
    assert images.pixels.shape == (8, 1, SIZE, SIZE)
    assert np.array_equal(images.pixels, fresh_decode(find_photos(folder).paths, grayscale=True))


def test_progress_bar_names_the_count(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    load(make_folder(tmp_path / "photos"), tmp_path / "cache", progress=True)
    assert "decoding 8 photos" in capsys.readouterr().err


# invalidation


def test_adding_a_photo_invalidates(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos")
    first = load(folder, tmp_path / "cache")
    write_photo(folder / "dog.99.jpg", seed=99)
    second = load(folder, tmp_path / "cache")
    assert second.decoded == 9 and len(second) == 9
    assert second.cache_file != first.cache_file


def test_removing_a_photo_invalidates(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos")
    load(folder, tmp_path / "cache")
    (folder / "cat.0.jpg").unlink()
    second = load(folder, tmp_path / "cache")
    assert second.decoded == 7
    assert np.array_equal(second.pixels, fresh_decode(second.paths))


def test_changing_a_photo_invalidates(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos")
    first = load(folder, tmp_path / "cache")
    changed = folder / "dog.3.jpg"
    before = changed.stat()
    write_photo(changed, seed=1234)
    os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    second = load(folder, tmp_path / "cache")
    assert second.decoded == 8
    row = second.paths.index(changed)
    assert not np.array_equal(second.pixels[row], first.pixels[row])
    assert np.array_equal(second.pixels[row], decode_photo(changed, SIZE, False))


def test_touching_a_photo_invalidates(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos")
    load(folder, tmp_path / "cache")
    stamp = (folder / "cat.2.jpg").stat()
    os.utime(folder / "cat.2.jpg", ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1))
    assert load(folder, tmp_path / "cache").decoded == 8


def test_settings_are_part_of_the_key(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos")
    cache = tmp_path / "cache"
    assert load(folder, cache).decoded == 8
    assert load(folder, cache, image_size=SIZE + 1).decoded == 8
    assert load(folder, cache, grayscale=True).decoded == 8
    assert load(folder, cache).decoded == 0  # the first entry is still there
    assert len(entries(cache)) == 3


def test_subset_of_photos_has_its_own_entry(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos")
    photos = find_photos(folder)
    half = PhotoSet(folder, photos.paths[:4], photos.labels[:4], photos.layout, [])
    cache = tmp_path / "cache"
    load_images(photos, SIZE, False, cache_dir=cache, workers=0, progress=False)
    subset = load_images(half, SIZE, False, cache_dir=cache, workers=0, progress=False)
    assert subset.decoded == 4 and subset.pixels.shape[0] == 4


# unreadable photos


def test_unreadable_photos_are_skipped_and_remembered(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos")
    (folder / "cat.50.jpg").write_bytes(b"")
    (folder / "dog.51.jpg").write_text("not a photo")
    good = write_photo(folder / "dog.52.jpg", seed=52).read_bytes()
    (folder / "dog.52.jpg").write_bytes(good[: len(good) // 2])
    expected_skipped = [folder / "cat.50.jpg", folder / "dog.51.jpg", folder / "dog.52.jpg"]
    for attempt in range(2):
        images = load(folder, tmp_path / "cache", workers=2)
        assert images.decoded == (11 if attempt == 0 else 0)
        assert images.skipped == expected_skipped
        assert len(images) == images.pixels.shape[0] == 8
        assert images.labels.tolist() == [label_from_name(p.name) for p in images.paths]
        assert np.array_equal(images.pixels, fresh_decode(images.paths))
    meta = json.loads((images.cache_file.parent / "meta.json").read_text())
    assert len(meta["skipped"]) == 3


def test_nothing_readable_is_a_data_error_and_leaves_no_entry(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.1.jpg").write_bytes(b"")
    (folder / "dog.1.jpg").write_text("nope")
    with pytest.raises(DataError, match=r"none of the 2 photos can be decoded") as error:
        load(folder, tmp_path / "cache")
    assert not isinstance(error.value, UnreadablePhotoError)
    assert entries(tmp_path / "cache") == []


def test_unwritable_cache_folder_is_a_data_error(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos")
    (tmp_path / "file").write_text("a file where a folder should be")
    with pytest.raises(DataError, match=r"can't create the photo cache.*CATDOG_CACHE_DIR"):
        load(folder, tmp_path / "file" / "cache")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CATDOG_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("CATDOG_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "catdog"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "catdog"


# crashes and races


def test_leftover_temporary_folder_is_never_read(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos")
    cache = tmp_path / "cache"
    key = load(folder, cache).cache_file.parent.name
    # Turn the entry back into what a writer killed before its rename leaves behind.
    os.rename(cache / key, cache / f"{key}.tmp-999-dead")
    np.save(cache / f"{key}.tmp-999-dead" / "pixels.npy", np.zeros((8, 3, SIZE, SIZE), np.uint8))
    images = load(folder, cache)
    assert images.decoded == 8
    assert np.array_equal(images.pixels, fresh_decode(images.paths))
    assert entries(cache) == [key]  # the leftover was cleared


@pytest.mark.parametrize("damage", ["no meta", "no pixels", "wrong count", "old version"])
def test_incomplete_or_inconsistent_entry_is_rewritten(tmp_path: Path, damage: str) -> None:
    folder = make_folder(tmp_path / "photos")
    cache = tmp_path / "cache"
    entry = load(folder, cache).cache_file.parent
    meta = json.loads((entry / "meta.json").read_text())
    if damage == "no meta":
        (entry / "meta.json").unlink()
    elif damage == "no pixels":
        (entry / "pixels.npy").unlink()
    else:
        meta["count" if damage == "wrong count" else "version"] += 1
        (entry / "meta.json").write_text(json.dumps(meta))
    images = load(folder, cache)
    assert images.decoded == 8
    assert np.array_equal(images.pixels, fresh_decode(images.paths))
    assert load(folder, cache).decoded == 0


def child_env() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(REPO_ROOT)}


LOADER = """
import json, sys, time
from pathlib import Path
import numpy as np
from catdog.data import find_photos
from catdog.images import load_images

folder, cache, ready, gate = (Path(a) for a in sys.argv[1:5])
photos = find_photos(folder)
ready.touch()
while not gate.exists():
    time.sleep(0.002)
images = load_images(photos, 16, False, cache_dir=cache, workers=0, progress=False)
total = int(np.asarray(images.pixels).sum(dtype=np.int64))
print(json.dumps({"decoded": images.decoded, "sum": total, "file": str(images.cache_file)}))
"""


def test_two_processes_loading_at_once_decode_once(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos", count=60)
    cache, gate = tmp_path / "cache", tmp_path / "gate"
    script = tmp_path / "loader.py"
    script.write_text(LOADER)
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    children = [
        subprocess.Popen(
            [sys.executable, str(script), str(folder), str(cache), str(r), str(gate)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for r in ready
    ]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.touch()  # both are past their imports: start together
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        results.append(json.loads(out))
    assert sorted(r["decoded"] for r in results) == [0, 60]  # one decoded, one waited and read
    assert (
        results[0]["sum"] == results[1]["sum"] == int(fresh_decode(find_photos(folder).paths).sum())
    )
    assert results[0]["file"] == results[1]["file"]
    assert len(entries(cache)) == 1


KILLED_WRITER = """
import sys
from pathlib import Path
from catdog.data import find_photos
from catdog.images import load_images

load_images(find_photos(Path(sys.argv[1])), 16, False, cache_dir=Path(sys.argv[2]), workers=0,
            progress=False)
"""


def test_killed_writer_never_leaves_a_readable_cache(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    sources = [write_photo(tmp_path / f"src{i}.jpg", seed=i, size=(640, 480)) for i in range(10)]
    for i in range(300):  # many photos (links to a few real files) make a slow writer
        (folder / f"{'cat' if i % 2 else 'dog'}.{i}.jpg").symlink_to(sources[i % 10])
    cache = tmp_path / "cache"
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    writer = subprocess.Popen(
        [sys.executable, str(script), str(folder), str(cache)], env=child_env()
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(cache.glob("*.tmp-*/pixels.npy")):
        time.sleep(0.001)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert [p.name.split(".")[1][:4] for p in cache.glob("*.tmp-*")] == ["tmp-"]
    assert not [name for name in entries(cache) if ".tmp-" not in name]  # no entry published

    images = load(folder, cache, workers=2)
    assert images.decoded == 300
    assert entries(cache) == [images.cache_file.parent.name]
    assert np.array_equal(images.pixels[:10], fresh_decode(images.paths[:10]))
