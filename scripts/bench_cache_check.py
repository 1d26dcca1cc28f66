"""What the photo cache's integrity check costs: CRC-32 of an entry's pixels, against start-up.

Usage: python scripts/bench_cache_check.py [PHOTOS_DIR] [--image-size 32]
Decodes PHOTOS_DIR (default: the shared Kaggle photos) into a scratch cache once, then times,
side by side in this process: opening the cached entry with its check (`open_entry`), the CRC
alone, and the whole cached start-up of `catdog train` up to its first epoch in a subprocess
(import, config, find photos, open the cache, channel statistics). Prints the ratio.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from catdog.data import find_photos
from catdog.images import cache_key, load_images, open_entry
from catdog.pixel_file import checksum

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "dogs-vs-cats" / "train"


def best_of(repeats: int, action) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("photos", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    photos = find_photos(args.photos)
    images = load_images(photos, args.image_size, False, cache_dir=cache, progress=False)
    entry = cache / cache_key(photos.paths, args.image_size, False)
    shape = (3, args.image_size, args.image_size)
    opened = best_of(5, lambda: open_entry(entry, len(photos.paths), shape))
    crc = best_of(5, lambda: checksum(images.pixels))
    command = [
        sys.executable, "-m", "catdog", "train", "--set", f"data.root={args.photos}",
        "--set", f"data.cache_dir={cache}", "--set", f"data.image_size={args.image_size}",
        "--set", "train.epochs=1", "--set", "train.progress=false",
        "--set", f"output.dir={cache / 'runs'}", "--set", "model.hidden=[8]",
    ]  # fmt: skip
    starts = []
    for _ in range(3):  # time to the header's last line (the optimizer): start-up only
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            if line.lstrip().startswith("optimizer"):
                starts.append(time.perf_counter() - started)
                break
        process.kill()
        process.wait()
    startup = statistics.median(starts)
    megabytes = images.pixels.nbytes / 1e6
    print(f"photos {len(images)}, pixels {megabytes:.1f} MB at {args.image_size} px")
    print(
        f"open_entry (with CRC) {opened * 1e3:.1f} ms; CRC alone {crc * 1e3:.1f} ms "
        f"({megabytes / crc / 1e3:.1f} GB/s)"
    )
    print(f"cached start-up of catdog train: {startup:.2f} s (median of {len(starts)})")
    print(f"CRC / start-up = {crc / startup:.2%}")


if __name__ == "__main__":
    main()
