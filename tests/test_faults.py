"""Fault injection: kills, a full disk, a damaged cache, hostile folders and files.

Everything here is real: subprocesses killed with real signals, a real small tmpfs (skipped,
saying why, where this process can't mount one), real files damaged on disk. Every wait is
bounded by a timeout; none sleeps in the hope that something has happened meanwhile.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import catdog
from catdog.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from catdog.data import find_photos
from catdog.decode import decode_photo
from catdog.errors import DataError, UnreadablePhotoError
from catdog.images import load_images
from catdog.synthetic import make_demo_data
from tests.helpers import catdog as run_catdog
from tests.helpers import write_photo

REPO_ROOT = Path(catdog.__file__).resolve().parents[1]
SIZE = 16


# --- helpers ------------------------------------------------------------------------------


def flat_folder(folder: Path, count: int = 8, suffix: str = "jpg") -> Path:
    for i in range(count):
        write_photo(folder / f"{'cat' if i % 2 == 0 else 'dog'}.{i}.{suffix}", seed=i)
    return folder


def slow_folder(folder: Path, tmp_path: Path, count: int = 400) -> Path:
    """Many links to a few large photos: a decode that takes seconds, on few bytes."""
    folder.mkdir()
    sources = [write_photo(tmp_path / f"src{i}.jpg", i, size=(1024, 768)) for i in range(8)]
    for i in range(count):
        (folder / f"{'cat' if i % 2 else 'dog'}.{i}.jpg").symlink_to(sources[i % 8])
    return folder


def load(folder: Path, cache: Path, **options: object):  # type: ignore[no-untyped-def]
    options = {"image_size": SIZE, "grayscale": False, "workers": 0, "progress": False} | options
    return load_images(find_photos(folder), cache_dir=cache, **options)  # type: ignore[arg-type]


def fresh_decode(paths: list[Path]) -> np.ndarray:
    return np.stack([decode_photo(p, SIZE, False) for p in paths])


def entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))


def child_env(**extra: str) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(REPO_ROOT)} | extra


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):  # the task ended meanwhile
            found |= {int(p) for p in (task / "children").read_text().split()}
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class Lines:
    """A child's stderr read line by line on a thread, so a test can wait for a line."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout} s; saw {self.seen}")


@contextmanager
def small_disk(folder: Path, size: str, options: str = "") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `folder`; skips where this process can't mount."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"can't mount a small tmpfs here ({mount.stderr.strip() or 'not root'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The stderr of a command that must fail with exit 2 and one line, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    return errors[0]


TRAIN = [
    "--set", "data.image_size=16", "--set", "model.hidden=[16]", "--set", "train.epochs=1",
    "--set", "train.batch_size=16", "--set", "train.progress=false",
]  # fmt: skip


# --- severe 1: a run killed during its first decode ---------------------------------------


def test_kill_9_during_the_first_decode_leaves_no_orphans_and_blocks_nothing(
    tmp_path: Path,
) -> None:
    folder = slow_folder(tmp_path / "photos", tmp_path)
    cache = tmp_path / "cache"
    args = ["train", "--set", f"data.root={folder}", "--set", "data.workers=2", *TRAIN]
    args += ["--set", f"output.dir={tmp_path / 'runs'}"]
    first = subprocess.Popen(
        [sys.executable, "-m", "catdog", *args],
        env=child_env(CATDOG_CACHE_DIR=str(cache)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: set[int] = set()
    try:
        wait_until(
            lambda: list(cache.glob("*.tmp-*/pixels.npy")) and len(children(first.pid)) >= 2,
            timeout=120,
            what="the first decode to start its workers",
        )
        workers = children(first.pid)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        wait_until(
            lambda: not any(alive(pid) for pid in workers), timeout=10, what="the workers to die"
        )
    finally:
        first.kill()
        for pid in workers:
            with suppress(OSError):  # orphans this test made, should the check above fail
                os.kill(pid, signal.SIGKILL)
    assert list(cache.glob("*.tmp-*"))  # it died mid-decode, leaving its temporary folder

    started = time.monotonic()
    second = run_catdog(*args, timeout=180, env={"CATDOG_CACHE_DIR": str(cache)})
    assert second.returncode == 0, second.stderr[-2000:]
    assert "waiting for" not in second.stderr  # nothing held the lock any more
    assert not list(cache.glob("*.tmp-*"))  # the leftover was cleared
    assert time.monotonic() - started < 180


HOLDER = """
import os, sys, time
from pathlib import Path
from catdog.cache_lock import holding

with holding(Path(sys.argv[1]), "a test entry"):
    child = os.fork()
    if child == 0:  # a child that outlives its parent, as an orphaned worker would
        time.sleep(120)
        os._exit(0)
    print(child, flush=True)
    time.sleep(120)
"""

TAKER = """
import sys
from pathlib import Path
from catdog.cache_lock import holding

with holding(Path(sys.argv[1]), "a test entry"):
    print("taken", flush=True)
"""


def test_a_forked_child_never_keeps_the_cache_lock(tmp_path: Path) -> None:
    lock = tmp_path / "entry.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    assert holder.stdout is not None
    child = int(holder.stdout.readline())
    try:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        assert alive(child)  # the orphan lives on ...
        taken = subprocess.run(
            [sys.executable, "-c", TAKER, str(lock)],
            capture_output=True,
            text=True,
            timeout=30,
            env=child_env(),
        )
        assert taken.stdout.strip() == "taken"  # ... and holds no lock: taken over at once
        assert "waiting for" not in taken.stderr
    finally:
        os.kill(child, signal.SIGKILL)


ENTRY_HOLDER = """
import sys, time
from pathlib import Path
from catdog.cache_lock import holding
from catdog.data import find_photos
from catdog.images import cache_key

folder, cache = Path(sys.argv[1]), Path(sys.argv[2])
cache.mkdir(parents=True, exist_ok=True)
key = cache_key(find_photos(folder).paths, 16, False)
with holding(cache / f"{key}.lock", "x"):
    print(key, flush=True)
    time.sleep(120)
"""

ENTRY_LOADER = """
import sys
from pathlib import Path
from catdog.data import find_photos
from catdog.images import load_images

images = load_images(find_photos(Path(sys.argv[1])), 16, False, cache_dir=Path(sys.argv[2]),
                     workers=0, progress=False)
print("decoded", images.decoded, flush=True)
"""


def test_a_waiting_process_says_what_and_whom_it_waits_for(tmp_path: Path) -> None:
    folder = flat_folder(tmp_path / "photos")
    cache = tmp_path / "cache"
    holder = subprocess.Popen(
        [sys.executable, "-c", ENTRY_HOLDER, str(folder), str(cache)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    assert holder.stdout is not None
    key = holder.stdout.readline().strip()
    loader = subprocess.Popen(
        [sys.executable, "-c", ENTRY_LOADER, str(folder), str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        line = Lines(loader.stderr).wait_for("waiting for", timeout=60)
        assert str(cache / key) in line and f"process {holder.pid}" in line
        holder.send_signal(signal.SIGKILL)  # the owner dies: its lock goes with it
        out, _ = loader.communicate(timeout=60)
        assert loader.returncode == 0 and out.split() == ["decoded", "8"]
    finally:
        holder.kill()
        loader.kill()


# --- severe 2: a full disk under the cache ------------------------------------------------


def test_a_full_disk_under_the_cache_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    folder = flat_folder(tmp_path / "photos", count=60)
    with small_disk(tmp_path / "small", "200k") as small:
        # 60 photos x 3 x 64 x 64 bytes = 0.74 MB: more than the disk holds.
        result = run_catdog(
            "train", "--set", f"data.root={folder}", "--set", f"data.cache_dir={small}",
            *TRAIN, "--set", "data.image_size=64", "--set", f"output.dir={tmp_path / 'runs'}",
        )  # fmt: skip
        line = one_error_line(result)
        assert line == (
            f"error: not enough space in {small} for 1 MB; free space or set data.cache_dir"
        )
        assert result.returncode == 2
        assert entries(small) == []  # no temporary folder keeps the disk full
        with pytest.raises(DataError, match="not enough space"):
            load(folder, small, image_size=64, workers=2)
        assert entries(small) == []


def test_a_read_only_cache_folder_is_one_line(tmp_path: Path) -> None:
    folder = flat_folder(tmp_path / "photos")
    refused = pytest.raises(DataError, match=r"can't write the photo cache here.*writable folder")
    with small_disk(tmp_path / "ro", "1m", ",ro") as read_only, refused:
        load(folder, read_only)


# --- the cache trusts nothing ----------------------------------------------------------


def damage_pixels_zero_bytes(entry: Path) -> None:
    (entry / "pixels.npy").write_bytes(b"")


def damage_bytes_overwritten(entry: Path) -> None:
    with open(entry / "pixels.npy", "r+b") as file:
        file.seek(os.path.getsize(entry / "pixels.npy") // 2)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0xFF]))


def damage_truncated(entry: Path) -> None:
    os.truncate(entry / "pixels.npy", os.path.getsize(entry / "pixels.npy") - 10)


def damage_bytes_appended(entry: Path) -> None:
    with open(entry / "pixels.npy", "ab") as file:
        file.write(b"\0" * 64)


def forge_meta(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(entry: Path) -> None:
        meta = json.loads((entry / "meta.json").read_text())
        (entry / "meta.json").write_text(json.dumps(change(meta)))

    return damage


def damage_entry_is_a_file(entry: Path) -> None:
    for name in ("pixels.npy", "meta.json"):
        (entry / name).unlink()
    entry.rmdir()
    entry.write_text("not a folder")


DAMAGES = {
    "zero-byte pixels.npy": damage_pixels_zero_bytes,
    "bytes overwritten": damage_bytes_overwritten,
    "truncated": damage_truncated,
    "bytes appended": damage_bytes_appended,
    "forged row -1": forge_meta(lambda m: m | {"skipped": {"-1": "forged"}}),
    "forged row 99": forge_meta(lambda m: m | {"skipped": {"99": "forged"}}),
    "forged row abc": forge_meta(lambda m: m | {"skipped": {"abc": "forged"}}),
    "forged skipped list": forge_meta(lambda m: m | {"skipped": [1, 2]}),
    "meta a list": forge_meta(lambda m: [m]),
    "no checksum": forge_meta(lambda m: {k: v for k, v in m.items() if k != "crc32"}),
    "meta not JSON": lambda entry: (entry / "meta.json").write_bytes(b"\xff{"),
    "entry a file": damage_entry_is_a_file,
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_entry_is_rebuilt_with_one_warning(
    tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = flat_folder(tmp_path / "photos")
    cache = tmp_path / "cache"
    entry = load(folder, cache).cache_file.parent
    capsys.readouterr()
    DAMAGES[damage](entry)
    images = load(folder, cache)
    assert images.decoded == 8
    assert np.array_equal(images.pixels, fresh_decode(images.paths))
    warnings_seen = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(warnings_seen) == 1 and warnings_seen[0].startswith(
        f"warning: the photo cache entry {entry} "
    ), warnings_seen
    assert load(folder, cache).decoded == 0  # rebuilt for good
    assert capsys.readouterr().err == ""


def test_a_damaged_entry_through_the_cli_trains(demo_photos: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ["train", "--set", f"data.root={demo_photos}", *TRAIN]
    args += ["--set", f"output.dir={tmp_path / 'runs'}", "--set", "data.workers=0"]
    assert run_catdog(*args, env={"CATDOG_CACHE_DIR": str(cache)}).returncode == 0
    [entry] = [cache / name for name in entries(cache)]
    damage_pixels_zero_bytes(entry)
    again = run_catdog(*args, env={"CATDOG_CACHE_DIR": str(cache)})
    assert again.returncode == 0, again.stderr[-2000:]
    assert "warning: the photo cache entry" in again.stderr and "Traceback" not in again.stderr


def same_size_other_photo(photo: Path, seed: int) -> Path:
    """A BMP of the same dimensions (so the same byte size) but different pixels."""
    other = photo.with_name(f"other-{seed}.bmp.tmp")
    size = Image.open(photo).size
    Image.fromarray(np.full((size[1], size[0], 3), seed % 256, np.uint8)).save(other, "BMP")
    assert other.stat().st_size == photo.stat().st_size
    return other


@pytest.mark.parametrize("how", ["cp -p", "touch -r and mv"])
def test_a_photo_replaced_with_its_time_restored_is_decoded_again(tmp_path: Path, how: str) -> None:
    folder = flat_folder(tmp_path / "photos", suffix="bmp")
    cache = tmp_path / "cache"
    first = load(folder, cache)
    photo = folder / "dog.3.bmp"
    before = photo.stat()
    other = same_size_other_photo(photo, seed=200)
    subprocess.run(["touch", "-r", str(photo), str(other)], check=True)
    if how == "cp -p":  # overwrites in place: same inode, same size, same mtime
        subprocess.run(["cp", "-p", str(other), str(photo)], check=True)
    else:
        os.replace(other, photo)
    after = photo.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    second = load(folder, cache)
    assert second.decoded == 8
    row = second.paths.index(photo)
    assert np.array_equal(second.pixels[row], decode_photo(photo, SIZE, False))
    assert not np.array_equal(second.pixels[row], first.pixels[row])


# --- hostile folder entries ----------------------------------------------------------------


def test_links_to_themselves_and_to_nowhere_are_skipped_as_unreadable(tmp_path: Path) -> None:
    flat = flat_folder(tmp_path / "flat")
    (flat / "cat.loop.jpg").symlink_to("cat.loop.jpg")
    (flat / "dog.gone.jpg").symlink_to("nowhere.jpg")
    folders = tmp_path / "folders"
    for i in range(4):
        write_photo(folders / "cat" / f"{i}.jpg", i)
        write_photo(folders / "dog" / f"{i}.jpg", 10 + i)
    (folders / "cat" / "loop.jpg").symlink_to("loop.jpg")
    (folders / "loop").symlink_to("loop")  # a looping folder link, beside the class folders
    for root, bad in [(flat, ["cat.loop.jpg", "dog.gone.jpg"]), (folders, ["loop.jpg"])]:
        images = load(root, tmp_path / "cache", workers=2)
        assert sorted(p.name for p in images.skipped) == bad
        assert len(images) == 8


def test_a_file_name_that_is_not_utf8_is_skipped_as_unreadable(tmp_path: Path) -> None:
    folder = flat_folder(tmp_path / "photos")
    odd = os.path.join(os.fsencode(folder), b"cat.\xff\xfe.jpg")
    with open(odd, "wb") as file:
        file.write((folder / "cat.0.jpg").read_bytes())
    images = load(folder, tmp_path / "cache")
    assert [os.fsencode(p) for p in images.skipped] == [odd]
    assert len(images) == 8
    with pytest.raises(UnreadablePhotoError, match="not valid UTF-8"):
        decode_photo(os.fsdecode(odd), SIZE, False)


def test_flat_photos_beside_class_folders_are_said_to_be_ignored_because_of_them(
    tmp_path: Path,
) -> None:
    for i in range(3):
        write_photo(tmp_path / "cat" / f"{i}.jpg", i)
        write_photo(tmp_path / "dog" / f"{i}.jpg", i)
        write_photo(tmp_path / f"cat.{i}.jpg", i)
    photos = find_photos(tmp_path)
    assert photos.layout == "folders" and len(photos) == 6
    [line] = photos.warnings
    assert "3 photos lying directly in" in line and "because class folders exist" in line
    assert "no cat/dog label" not in line


def test_a_dog_folder_holding_cat_named_photos_is_warned_about(tmp_path: Path) -> None:
    for i in range(3):
        write_photo(tmp_path / "cat" / f"{i}.jpg", i)
        write_photo(tmp_path / "dog" / f"cat.{i}.jpg", i)
    photos = find_photos(tmp_path)
    assert photos.labels.tolist() == [0, 0, 0, 1, 1, 1]  # the folder decides
    [line] = photos.warnings
    assert f"3 photos in {tmp_path / 'dog'} are named as cats" in line


def test_photos_beyond_pillows_bomb_limit_are_refused_without_its_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_photo(tmp_path / "big.png", 0, size=(40, 30))  # 1,200 pixels
    for limit in (1000, 500):  # 1.2x the limit: Pillow warns; 2.4x: Pillow refuses
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(UnreadablePhotoError, match="Decompression"):
                decode_photo(path, SIZE, False)


# --- checkpoints -------------------------------------------------------------------------


def payload(value: float = 1.0) -> dict:
    return {
        "model": {"w": torch.full((64, 64), value)},
        "config": {},
        "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    }


def test_checkpoints_get_the_usual_permissions_and_clear_leftovers(tmp_path: Path) -> None:
    leftover = tmp_path / ".last.pt.k1ll3d.tmp"
    leftover.write_bytes(b"\0" * 1000)
    other = tmp_path / ".best.pt.k1ll3d.tmp"
    other.write_bytes(b"")
    previous = os.umask(0o022)
    try:
        save_checkpoint(payload(), tmp_path / "last.pt")
    finally:
        os.umask(previous)
    assert (tmp_path / "last.pt").stat().st_mode & 0o777 == 0o644
    assert not leftover.exists() and other.exists()  # only last.pt's own leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.pt.k1ll3d.tmp", "last.pt"]


SAVER = """
import sys, torch
from pathlib import Path
from catdog.checkpoint import save_checkpoint
path = Path(sys.argv[1])
big = {"model": {"w": torch.zeros(2048, 2048)}, "config": {},
       "normalization": {"mean": [0.0], "std": [1.0]}}
print("ready", flush=True)
while True:
    save_checkpoint(big, path)
"""


def test_a_kill_9_mid_write_leaves_no_tmp_file_after_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    for delay in (0.05, 0.2, 0.5):
        saver = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert saver.stdout is not None and saver.stdout.readline().strip() == "ready"
        wait_until(lambda: list(tmp_path.glob(".last.pt.*.tmp")), 60, "a write in progress")
        time.sleep(delay)  # a random point of a write that is known to be under way
        saver.kill()
        saver.wait(timeout=30)
    save_checkpoint(payload(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert torch.equal(load_checkpoint(path)["model"]["w"], payload()["model"]["w"])


def test_a_rename_is_followed_by_an_fsync_of_the_folder(tmp_path: Path) -> None:
    strace = subprocess.run(["which", "strace"], capture_output=True, text=True).stdout.strip()
    if not strace:
        pytest.skip("strace is not installed")
    script = (
        "import sys, torch; from pathlib import Path; "
        "from catdog.checkpoint import save_checkpoint; "
        "save_checkpoint({'model': {}, 'config': {}, 'normalization': {}}, Path(sys.argv[1]))"
    )
    calls = "trace=rename,renameat,renameat2,openat,fsync"
    traced = subprocess.run(
        [strace, "-f", "-e", calls, sys.executable, "-c", script, str(tmp_path / "last.pt")],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
    )
    if "Operation not permitted" in traced.stderr and "PTRACE" in traced.stderr.upper():
        pytest.skip("ptrace is not allowed here")
    calls = traced.stderr.splitlines()
    rename = next(i for i, c in enumerate(calls) if "rename" in c and "last.pt" in c)
    opened = [c for c in calls[rename:] if "openat" in c and f'"{tmp_path}"' in c]
    assert opened, calls[rename:]
    descriptor = opened[0].rsplit("=", 1)[1].strip()
    assert any(f"fsync({descriptor})" in c for c in calls[rename:])


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_old_one(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "small", "600k") as small:
        path = small / "last.pt"
        save_checkpoint(payload(1.0), path)  # 16 kB: fits
        big = payload(2.0) | {"model": {"w": torch.zeros(512, 512)}}  # 1 MB: doesn't
        with pytest.raises(CheckpointError) as error:
            save_checkpoint(big, path)
        assert str(error.value) == (
            f"not enough space in {small} for 2 MB to write last.pt; "
            "free space (the previous last.pt is kept)"
        )
        assert [p.name for p in small.iterdir()] == ["last.pt"]
        assert torch.equal(load_checkpoint(path)["model"]["w"], payload(1.0)["model"]["w"])


def test_a_copy_is_a_link_to_the_new_file_that_the_next_write_leaves_alone(
    tmp_path: Path,
) -> None:
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    save_checkpoint(payload(1.0), last, best)
    assert last.stat().st_ino == best.stat().st_ino  # one write for both
    save_checkpoint(payload(2.0), last)  # a new file renamed over last.pt: best.pt keeps its own
    assert last.stat().st_ino != best.stat().st_ino
    assert torch.equal(load_checkpoint(best)["model"]["w"], payload(1.0)["model"]["w"])
    assert torch.equal(load_checkpoint(last)["model"]["w"], payload(2.0)["model"]["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_a_copy_on_another_file_system_is_written_again(tmp_path: Path) -> None:
    with small_disk(tmp_path / "other", "1m") as other:
        last, best = tmp_path / "last.pt", other / "best.pt"
        save_checkpoint(payload(3.0), last, best)  # a hard link can't cross file systems
        assert torch.equal(load_checkpoint(best)["model"]["w"], payload(3.0)["model"]["w"])
        assert [p.name for p in other.iterdir()] == ["best.pt"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["normalization"].pop("mean"), "normalization.mean is missing"),
        (lambda p: p["normalization"].update(std=[0.0]), "normalization.std has a value"),
        (lambda p: p["normalization"].update(mean="x"), "normalization.mean is not a list"),
        (lambda p: p.update(model={"w": "not a tensor"}), "model is not a table"),
        (lambda p: p.update(normalization=[1]), "normalization is not a table"),
    ],
)
def test_a_checkpoint_with_damaged_parts_is_one_line(
    tmp_path: Path, change: Callable[[dict], object], message: str
) -> None:
    damaged = payload()
    change(damaged)
    save_checkpoint(damaged, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=message) as error:
        load_checkpoint(tmp_path / "last.pt")
    assert "\n" not in str(error.value) and str(tmp_path / "last.pt") in str(error.value)


# --- make-demo-data ----------------------------------------------------------------------


def test_make_demo_data_never_overwrites_photos(tmp_path: Path) -> None:
    folder = flat_folder(tmp_path / "kaggle", count=4)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    line = one_error_line(run_catdog("make-demo-data", folder, "--per-class", "2"))
    assert str(folder) in line and "already holds 4 photos" in line and "new or empty" in line
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    with pytest.raises(DataError, match="already holds"):
        make_demo_data(folder, 2, progress=False)


@pytest.mark.parametrize("target", ["a file", "below a file", "read-only"])
def test_make_demo_data_into_an_unwritable_target_is_one_line(tmp_path: Path, target: str) -> None:
    (tmp_path / "file").write_text("x")
    if target == "read-only":
        with small_disk(tmp_path / "ro", "1m", ",ro") as read_only:
            line = one_error_line(run_catdog("make-demo-data", read_only, "--per-class", "2"))
            assert str(read_only) in line
        return
    out = tmp_path / "file" if target == "a file" else tmp_path / "file" / "demo"
    line = one_error_line(run_catdog("make-demo-data", out, "--per-class", "2"))
    assert str(out) in line


def test_make_demo_data_with_a_negative_seed_is_one_line(tmp_path: Path) -> None:
    line = one_error_line(run_catdog("make-demo-data", tmp_path / "d", "--seed", "-1"))
    assert "seed must be a non-negative integer, got -1" in line
    assert not (tmp_path / "d").exists()


# --- configs and command-line values -----------------------------------------------------

LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)
BAD_CONFIGS: dict[str, tuple[bytes, str]] = {
    "billion laughs": (LAUGHS.encode(), r"aliases \(\*a\) are not allowed"),
    "binary": (bytes(range(256)) * 4, r"not UTF-8 text \(byte 0x80 at offset 128\)"),
    "Latin-1": ("output:\n  name: caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
    "nested 5,000 deep": (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    "duplicate key": (b"optimizer:\n  lr: 0.1\n  lr: 0.2\n", r"line 3, .*duplicate key 'lr'"),
    "2 MiB": (b"# " + b"x" * (2 << 20), r"too large for a config \(more than 1 MiB\)"),
    "NUL in output.name": (b'output:\n  name: "a\\0b"\n', "must not contain a NUL"),
    "seed -1": (b"seed: -1\n", "seed: Input should be greater than or equal to 0"),
    "seed 2**64": (f"seed: {2**64}\n".encode(), "seed: Input should be less than"),
    "mixup .inf": (b"data:\n  augment:\n    mixup: .inf\n", "mixup: Input should be a finite"),
    "threads 100000": (b"train:\n  threads: 100000\n", "threads: Input should be less than"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=list(BAD_CONFIGS))
def test_a_hostile_config_file_is_one_short_line(tmp_path: Path, case: str) -> None:
    from catdog.config import load_config
    from catdog.errors import ConfigError

    content, message = BAD_CONFIGS[case]
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert time.monotonic() - started < 10  # the laughs are refused, not expanded
    assert "\n" not in str(error.value) and len(str(error.value)) < 500


def test_dev_zero_is_refused_without_reading_it_all() -> None:
    from catdog.config import load_config
    from catdog.errors import ConfigError

    with pytest.raises(ConfigError, match="/dev/zero: too large for a config"):
        load_config("/dev/zero")


def test_a_long_value_is_cut_short_in_the_message() -> None:
    from catdog.config import load_config
    from catdog.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model.hidden: every width") as error:
        load_config(None, [f"model.hidden=[{','.join(['0'] * 100_000)}]"])
    assert len(str(error.value)) < 500


@pytest.mark.parametrize("name", ["a/b", "../../x", "/abs/olute", "x" * 300, "..", ""])
def test_output_name_must_be_one_folder_name(name: str) -> None:
    from catdog.config import load_config
    from catdog.errors import ConfigError

    with pytest.raises(ConfigError, match=r"output.name: (must|is \d+ bytes)"):
        load_config(None, [f"output.name={name!r}" if name else "output.name=''"])


def test_comparison_names_and_targets_are_checked(tmp_path: Path) -> None:
    from catdog.compare import compare
    from catdog.errors import ConfigError
    from catdog.runs import fresh_folder

    with pytest.raises(ConfigError, match=r"name '\.\./\.\./x': must be one folder name"):
        fresh_folder(tmp_path, "../../x", "--out-dir")
    with pytest.raises(ConfigError, match="--target-loss nan: give a positive, finite loss"):
        compare([], tmp_path, "c", target_loss=float("nan"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["a file", "below a file", "read-only"])
def test_an_output_dir_that_cannot_hold_runs_is_one_line(tmp_path: Path, where: str) -> None:
    from catdog.config import load_config
    from catdog.errors import ConfigError
    from catdog.runs import new_run_dir

    (tmp_path / "file").write_text("x")
    if where == "read-only":
        with small_disk(tmp_path / "ro", "1m", ",ro") as read_only:
            config = load_config(None, [f"output.dir={read_only}", "output.name=r"])
            with pytest.raises(ConfigError, match=r"output.dir: can't make a folder in .*only"):
                new_run_dir(config, "run")
        return
    parent = tmp_path / "file" if where == "a file" else tmp_path / "file" / "runs"
    config = load_config(None, [f"output.dir={parent}"])
    with pytest.raises(ConfigError, match=r"output.dir: .*(is a file|Not a directory)"):
        new_run_dir(config, "run")


def test_a_bogus_device_is_one_line() -> None:
    from catdog.devices import resolve_device
    from catdog.errors import ConfigError

    with pytest.raises(ConfigError, match="device: 'bogus': must be auto, cpu, cuda or cuda:N"):
        resolve_device("bogus")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("trained")
    photos = flat_folder(folder / "photos", count=20)
    args = ["train", "--set", f"data.root={photos}", *TRAIN, "--set", "data.workers=0"]
    args += ["--set", f"output.dir={folder / 'runs'}", "--set", "output.name=run"]
    result = run_catdog(*args, env={"CATDOG_CACHE_DIR": str(folder / "cache")})
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "runs" / "run"


def forged(run: Path, folder: Path, change: Callable[[dict], object]) -> Path:
    payload = torch.load(run / "best.pt", weights_only=True)
    change(payload)
    path = folder / "forged.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["config"]["model"].update(hidden=[10**8]), "asks for a .*-weight network"),
        (lambda p: p["config"]["model"].update(ensemble=10**8), "asks for a .*-weight network"),
        (lambda p: p["config"]["model"].update(hidden=[9]), "weights don't match its own config"),
    ],
    ids=["hidden=[10**8]", "ensemble=10**8", "weights not its config"],
)
def test_a_forged_checkpoint_config_is_one_line_before_any_allocation(
    trained_run: Path, tmp_path: Path, change: Callable[[dict], object], message: str
) -> None:
    from catdog.evaluate import restore

    with pytest.raises(CheckpointError, match=message) as error:
        restore(forged(trained_run, tmp_path, change), "cpu")
    assert "\n" not in str(error.value)


def test_evaluate_makes_its_cache_where_this_machine_says(
    trained_run: Path, tmp_path: Path, private_cache: Path
) -> None:
    from catdog.evaluate import evaluate

    elsewhere = tmp_path / "named-by-the-checkpoint"
    path = forged(
        trained_run, tmp_path, lambda p: p["config"]["data"].update(cache_dir=str(elsewhere))
    )
    result, _ = evaluate(path, device="cpu", progress=False)
    assert result.count > 0
    assert not elsewhere.exists()


def test_a_run_without_validation_says_where_to_evaluate_it(tmp_path: Path) -> None:
    photos = flat_folder(tmp_path / "photos", count=8)
    args = ["train", "--set", f"data.root={photos}", *TRAIN, "--set", "data.val_fraction=0"]
    args += ["--set", f"output.dir={tmp_path / 'runs'}", "--set", "output.name=r"]
    trained = run_catdog(*args)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "no val" in trained.stdout and "nan" not in trained.stdout
    assert f"evaluate {tmp_path / 'runs' / 'r'} --data DIR" in trained.stdout
    refused = run_catdog("evaluate", tmp_path / "runs" / "r", "--json")
    assert refused.returncode == 2 and refused.stdout == ""
    assert "no photo was held out" in refused.stderr and "--data DIR" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    # On other photos it measures, as strict JSON: one class leaves AUC undefined, never NaN.
    cats = tmp_path / "cats" / "cat"
    cats.mkdir(parents=True)
    for photo in sorted(photos.glob("cat.*"))[:2]:
        (cats / photo.name).symlink_to(photo)
    result = run_catdog("evaluate", tmp_path / "runs" / "r", "--json", "--data", cats.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in output"))
    assert report["count"] == 2 and report["auc"] is None
