"""Train catdog on messy photo folders, as users' folders are, and count those it trains.

    python scripts/probe_messy_folders.py [WORK_DIR]

Each folder holds 12 good cats and 12 good dogs (real JPEGs of the shared photos when they are
there, else demo photos) plus one kind of mess. Trained: `catdog train` exits 0 with no
traceback, having skipped what it can't use (each skipped photo said on stderr). Prints one
row per folder and the total. Tiny networks, one epoch, one thread.
"""

import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

PY = sys.executable
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "dogs-vs-cats" / "train"
TINY = [
    "--set", "data.image_size=8", "--set", "model.hidden=[8]", "--set", "train.epochs=1",
    "--set", "train.progress=false", "--set", "data.workers=0", "--set", "train.threads=1",
]  # fmt: skip


def good_photos(source: Path, folder: Path, layout: str) -> None:
    """12 cats and 12 dogs, flat (`cat.N.jpg`) or in class folders (`cat/N.jpg`)."""
    for kind in ("cat", "dog"):
        for n in range(1, 13):
            target = folder / f"{kind}.{n}.jpg" if layout == "flat" else folder / kind / f"{n}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / f"{kind}.{n}.jpg", target)


def jpeg_bytes(mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> bytes:
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "CMYK": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)
    out = io.BytesIO()
    image.save(out, format="JPEG")
    return out.getvalue()


def png_bytes(mode: str) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 2**16 if mode == "I;16" else 256, (30, 40))
    image = Image.fromarray(pixels.astype(np.uint16 if mode == "I;16" else np.uint8))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def messes() -> dict[str, tuple[str, Callable[[Path], None]]]:
    """name -> (layout, what to add to the folder)."""

    def write(name: str, data: bytes) -> Callable[[Path], None]:
        return lambda folder: (folder / name).write_bytes(data)

    def link(name: str, to: str) -> Callable[[Path], None]:
        return lambda folder: os.symlink(to, folder / name)

    def raw_name(folder: Path) -> None:
        with open(os.path.join(os.fsencode(folder), b"cat.\xff.jpg"), "wb") as file:  # not UTF-8
            file.write(jpeg_bytes())

    def hidden(folder: Path) -> None:
        (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (folder / "._cat.95.jpg").write_bytes(b"\0\5\26\7")  # macOS's resource fork

    def nested(folder: Path) -> None:
        (folder / "cat" / "more").mkdir(parents=True, exist_ok=True)
        (folder / "cat" / "more" / "x.jpg").write_bytes(jpeg_bytes())

    def flat_beside(folder: Path) -> None:
        (folder / "cat.99.jpg").write_bytes(jpeg_bytes())

    def cats_in_dog(folder: Path) -> None:
        (folder / "dog" / "cat.50.jpg").write_bytes(jpeg_bytes())

    return {
        "0-byte .jpg": ("flat", write("cat.90.jpg", b"")),
        "truncated .jpg": ("flat", write("dog.90.jpg", jpeg_bytes()[:200])),
        "text file named .jpg": ("flat", write("cat.91.jpg", b"not a photo\n")),
        "PNG named .jpg": ("flat", write("dog.91.jpg", png_bytes("L"))),
        "CMYK JPEG": ("flat", write("cat.92.jpg", jpeg_bytes("CMYK"))),
        "grey JPEG": ("flat", write("dog.92.jpg", jpeg_bytes("L"))),
        "16-bit PNG": ("flat", write("cat.93.png", png_bytes("I;16"))),
        "upper-case .JPEG": ("flat", write("dog.93.JPEG", jpeg_bytes())),
        "link to itself": ("flat", link("cat.94.jpg", "cat.94.jpg")),
        "link to nowhere": ("flat", link("dog.94.jpg", "/no/such/photo.jpg")),
        "name not UTF-8": ("flat", raw_name),
        "hidden files (.DS_Store, ._cat)": ("flat", hidden),
        "Thumbs.db and notes": ("flat", write("Thumbs.db", b"\0" * 64)),
        "unlabelled names": ("flat", write("photo.jpg", jpeg_bytes())),
        "Cat/ and Dog/ folders": ("Cat/Dog", lambda folder: None),
        "cats/ and dogs/ folders": ("cats/dogs", lambda folder: None),
        "a subfolder in cat/": ("folders", nested),
        "flat photos beside class folders": ("folders", flat_beside),
        "dog/ holding cat.* photos": ("folders", cats_in_dog),
    }


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="messy-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["CATDOG_CACHE_DIR"] = str(work / "cache")
    source = SHARED
    if not (source / "cat.1.jpg").is_file():
        source = work / "demo"
        if not source.exists():
            subprocess.run([PY, "-m", "catdog", "make-demo-data", source, "--per-class", "12"],
                           check=True)  # fmt: skip
    trained = 0
    for index, (name, (layout, mess)) in enumerate(messes().items()):
        folder = work / f"folder{index:02d}"
        shutil.rmtree(folder, ignore_errors=True)
        good_photos(source, folder, "flat" if layout == "flat" else "folders")
        if "/" in layout:  # other class-folder names
            cat, dog = layout.split("/")
            (folder / "cat").rename(folder / cat)
            (folder / "dog").rename(folder / dog)
        mess(folder)
        args = ["train", "--set", f"data.root={folder}", "--set", f"output.dir={work / 'runs'}"]
        result = subprocess.run(
            [PY, "-m", "catdog", *args, *TINY], capture_output=True, text=True, timeout=300
        )
        ok = result.returncode == 0 and "Traceback" not in result.stderr
        trained += ok
        said = [line for line in result.stderr.splitlines() if line.strip()]
        last = (said[-1] if said else "")[:110]
        print(f"{'ok ' if ok else 'BAD'}  {name:34s} {last}", flush=True)
    print(f"\ntrained {trained} of {len(messes())}")


if __name__ == "__main__":
    main()
