"""Measure the data path against the usual baselines, side by side in one process.

    PYTHONPATH=. python scripts/bench_data.py [--image-size 64] [--batch-size 64] [--skip-25k]

The issue's setting is 64 px, batch 64; configs/default.yaml trains at 16 px, batch 128
(`--image-size 16 --batch-size 128`).

Prints one table:
- first pass (decode + cache) photos/s: `load_images` vs a naive one-process Pillow loop
  (open, convert, resize; Pillow's default filter, the one `load_images` uses too), on all the
  photos and again on the full-size ones alone (the sample's others are 200 x 200);
- one training epoch (MLP 3*S*S -> 512 -> 128 -> 1, SGD, --batch-size): from the cache with
  `Batches` vs torchvision's `ImageFolder` + `DataLoader(num_workers=2)`;
- the data path's share of a cached epoch: the same steps over batches already in memory;
- batch reads from a cold memmap: rows in ascending order vs as drawn;
- peak RSS of a cached 25,000-photo epoch at 64 px, in a fresh process.
The 6,000 real photos are repeated (symlinks) to 25,000 in a temporary folder unless
--skip-25k. Ours and the baselines take turns (slices of photos, or rounds of whole epochs; the
best round counts), so that load from other processes falls on both alike.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from catdog.batches import Batches, channel_stats, to_inputs
from catdog.data import PhotoSet, find_photos
from catdog.images import DecodedImages, load_images
from catdog.model import MLP

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = REPO_ROOT / ".." / "shared" / "data" / "dogs-vs-cats" / "train"
Step = Callable[[torch.Tensor, torch.Tensor], None]


class Table:
    """Rows of (measurement, ours, baseline, ratio, goal), each printed as it comes in."""

    header = ("measurement", "ours", "baseline", "ratio", "goal")

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(self, row: tuple[str, ...]) -> None:
        self.rows.append(row)
        print("  measured: " + " | ".join(cell for cell in row if cell), flush=True)

    def print(self) -> None:
        rows = [self.header, *self.rows]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.header))]
        rows.insert(1, tuple("-" * width for width in widths))
        for row in rows:
            print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64, help="of the training epochs")
    parser.add_argument("--repeats", type=int, default=2, help="rounds on the 6,000 photos")
    parser.add_argument("--slices", type=int, default=6, help="turns in the first-pass race")
    parser.add_argument("--many", type=int, default=25_000, help="photos in the repeated set")
    parser.add_argument("--skip-25k", action="store_true", help="skip the repeated-photos part")
    parser.add_argument("--rss-child", nargs=2, metavar=("PHOTOS", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(Path(args.rss_child[0]), Path(args.rss_child[1]), args.batch_size)
        return

    size, batch = args.image_size, args.batch_size
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start, "
        f"S = {size}, batch {batch}"
    )
    table = Table()
    with tempfile.TemporaryDirectory(prefix="bench-data-") as work_dir:
        work = Path(work_dir)
        photos = find_photos(args.photos)
        bench_first_pass(photos, size, args.slices, work, table, f"{len(photos):,}")
        # Kaggle's own photos are all full size; two thirds of this sample were shrunk to
        # 200 x 200 by a third party, which leaves the JPEG decoder less to skip.
        originals = full_size(photos)
        if originals and len(originals) < len(photos):
            label = f"{len(originals):,} full-size"
            bench_first_pass(originals, size, args.slices, work, table, label)
        images = load_images(photos, size, False, cache_dir=work / "cache", progress=False)
        bench_epochs(images, size, batch, args.repeats, work / "tree", table, f"{len(images):,}")
        bench_data_share(images, batch, args.repeats, table)
        bench_sorted_reads(images, batch, table)
        rss_photos = photos
        if not args.skip_25k:
            many = repeat_photos(photos, args.many, work / "photos-many")
            # The naive loop runs on a sample just before and just after, for the same load.
            sample = photos.paths[:: max(1, len(photos) // 500)]
            naive_s = timed(naive_decode, sample, size).wall
            ours_s = timed(
                load_images, many, size, False, cache_dir=work / "cache", progress=False
            ).wall
            naive_s += timed(naive_decode, sample, size).wall
            rate, naive_rate = len(many) / ours_s, 2 * len(sample) / naive_s
            big = load_images(many, size, False, cache_dir=work / "cache", progress=False)
            table.add(
                (
                    f"first pass, {len(many):,} (photos/s)",
                    f"{rate:.0f}",
                    f"{naive_rate:.0f} (naive, before + after)",
                    f"{rate / naive_rate:.1f}x",
                    ">= 3x",
                )
            )
            bench_epochs(big, size, batch, 1, work / "tree-many", table, f"{len(many):,}")
            rss_photos = many
        # 64 px per the goal; the child reads the cache that this builds (or finds).
        load_images(rss_photos, 64, False, cache_dir=work / "cache", progress=False)
        peak = measure_rss(rss_photos.root, work / "cache", batch)
        table.add(
            (
                f"peak RSS, cached epoch of {len(rss_photos):,} at 64 px",
                f"{peak:.0f} MB",
                "",
                "",
                "<= 1500 MB",
            )
        )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    table.print()


def full_size(photos: PhotoSet) -> PhotoSet | None:
    """The photos not of the third party's exact 200 x 200 (sizes read from the headers)."""
    keep = []
    for row, path in enumerate(photos.paths):
        with Image.open(path) as image:
            if image.size != (200, 200):
                keep.append(row)
    if not keep:
        return None
    return PhotoSet(
        photos.root, [photos.paths[r] for r in keep], photos.labels[keep], photos.layout, []
    )


def bench_first_pass(
    photos: PhotoSet, size: int, slices: int, work: Path, table: Table, label: str
) -> None:
    """Decode + cache rate of `load_images` (all cores, and one process) vs a naive loop.

    The three take turns on the same slice of photos, slice after slice, so that the load
    other processes put on the machine falls on all three alike.
    """
    seconds = {"ours": 0.0, "single": 0.0, "naive": 0.0}
    cpu = dict.fromkeys(seconds, 0.0)
    for i, rows in enumerate(np.array_split(np.arange(len(photos)), slices)):
        part = PhotoSet(
            photos.root, [photos.paths[r] for r in rows], photos.labels[rows], "flat", []
        )
        methods = list(seconds)
        for method in methods[i % 3 :] + methods[: i % 3]:  # rotate who goes first
            cache = work / f"first-pass-{method}"
            timing = timed(first_pass, method, part, size, cache)
            seconds[method] += timing.wall
            cpu[method] += timing.cpu
            shutil.rmtree(cache, ignore_errors=True)
    ours_rate, single_rate, naive_rate = (len(photos) / seconds[k] for k in seconds)
    ms = {k: f"{1000 * cpu[k] / len(photos):.1f} CPU-ms each" for k in cpu}
    baseline = f"{naive_rate:.0f} ({ms['naive']}; naive, 1 process)"
    table.add(
        (
            f"first pass, {label} (photos/s)",
            f"{ours_rate:.0f} ({ms['ours']})",
            baseline,
            f"{ours_rate / naive_rate:.1f}x",
            ">= 3x",
        )
    )
    table.add(
        (
            "  the same in 1 process (draft alone)",
            f"{single_rate:.0f} ({ms['single']})",
            baseline,
            f"{single_rate / naive_rate:.1f}x",
            "",
        )
    )


def first_pass(method: str, photos: PhotoSet, size: int, cache: Path) -> None:
    if method == "naive":
        naive_decode(photos.paths, size)
    else:
        workers = None if method == "ours" else 0  # all cores, or this process only
        load_images(photos, size, False, cache_dir=cache, workers=workers, progress=False)


def naive_decode(paths: list[Path], size: int) -> None:
    for path in paths:
        with Image.open(path) as image:
            np.asarray(image.convert("RGB").resize((size, size)))


def bench_epochs(
    images: DecodedImages,
    size: int,
    batch_size: int,
    repeats: int,
    tree: Path,
    table: Table,
    label: str,
) -> None:
    """One epoch from the cache vs one through ImageFolder + DataLoader(num_workers=2)."""
    from torchvision import datasets, transforms

    everything = np.arange(len(images))
    mean, std = channel_stats(images.pixels, everything)
    batches = Batches(images.pixels, images.labels, everything, batch_size, mean, std, seed=0)
    class_tree(images, tree)
    transform = transforms.Compose(
        [
            transforms.Resize((size, size)),
            transforms.ToTensor(),
            transforms.Normalize(mean.tolist(), std.tolist()),
        ]
    )
    folder = datasets.ImageFolder(str(tree), transform=transform)
    loader = torch.utils.data.DataLoader(folder, batch_size, shuffle=True, num_workers=2)
    ours, baseline = [], []
    for _ in range(repeats):
        ours.append(timed(run_epoch, batches.epoch(0), size))
        baseline.append(
            timed(lambda: run_epoch(((x.flatten(1), y.float()) for x, y in loader), size))
        )
    ours_best, baseline_best = min(ours), min(baseline)  # fastest wall time
    table.add(
        (
            f"epoch, {label} photos",
            str(ours_best),
            f"{baseline_best} (ImageFolder)",
            f"{baseline_best.wall / ours_best.wall:.1f}x",
            ">= 5x",
        )
    )


def bench_data_share(images: DecodedImages, batch_size: int, repeats: int, table: Table) -> None:
    """A cached epoch vs the same steps over batches already normalised in memory."""
    everything = np.arange(len(images))
    mean, std = channel_stats(images.pixels, everything)
    batches = Batches(images.pixels, images.labels, everything, batch_size, mean, std, seed=0)
    order = batches.order(0)
    in_memory = []
    for b in range(len(batches)):
        rows_b = np.sort(order[b * batch_size : (b + 1) * batch_size])
        labels = torch.as_tensor(images.labels[rows_b], dtype=torch.float32)
        in_memory.append((to_inputs(images.pixels[rows_b], mean, std), labels))
    size = images.pixels.shape[-1]
    ours, memory, alone = [], [], []
    for _ in range(repeats + 1):
        memory.append(timed(run_epoch, in_memory, size))
        ours.append(timed(run_epoch, batches.epoch(0), size))
        # The data path with no training. Drop each batch as training does: keeping them all
        # (`list`) would page-fault fresh memory for every batch and overstate the cost.
        alone.append(timed(deque, batches.epoch(0), maxlen=0))
    ours_best, memory_best, alone_best = min(ours), min(memory), min(alone)
    share = (ours_best.wall - memory_best.wall) / ours_best.wall
    table.add(
        (
            "data path's share of a cached epoch",
            str(ours_best),
            f"{memory_best} (in memory)",
            f"{100 * share:.1f}%",
            "<= 10%",
        )
    )
    # The difference of two noisy epochs can even come out negative on a busy machine;
    # timing the batches alone measures the same share directly.
    table.add(
        (
            "  its batches alone, no training",
            str(alone_best),
            f"{ours_best} (cached epoch)",
            f"{100 * alone_best.wall / ours_best.wall:.1f}%",
            "<= 10%",
        )
    )


def bench_sorted_reads(images: DecodedImages, batch_size: int, table: Table) -> None:
    """One epoch of batch reads from a cold memmap, rows ascending vs as drawn."""
    order = np.random.default_rng(0).permutation(len(images))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(2):
        for ascending in (False, True):
            evict(images.cache_file)
            pixels = np.load(images.cache_file, mmap_mode="r")
            times[ascending].append(timed(read_batches, pixels, batches, ascending).wall)
            del pixels
    sorted_s, drawn_s = min(times[True]), min(times[False])
    table.add(
        (
            "epoch of reads, cold memmap (s)",
            f"{sorted_s:.2f} (sorted)",
            f"{drawn_s:.2f} (as drawn)",
            f"{drawn_s / sorted_s:.1f}x",
            "",
        )
    )


def read_batches(pixels: np.ndarray, batches: list[np.ndarray], ascending: bool) -> None:
    for rows in batches:
        pixels[np.sort(rows) if ascending else rows]


def evict(path: Path) -> None:
    """Drop this one file's pages from the page cache, so the next read hits the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_epoch(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], size: int) -> None:
    torch.manual_seed(0)
    model = MLP(3 * size * size, (512, 128))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.BCEWithLogitsLoss()
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()


def class_tree(images: DecodedImages, tree: Path) -> None:
    """cat/ and dog/ folders of links to the photos, the layout ImageFolder reads."""
    for name in ("cat", "dog"):
        (tree / name).mkdir(parents=True)
    for i, (path, label) in enumerate(zip(images.paths, images.labels, strict=True)):
        (tree / ("cat", "dog")[label] / f"{i}{path.suffix}").symlink_to(path.resolve())


def repeat_photos(photos: PhotoSet, count: int, folder: Path) -> PhotoSet:
    """A flat Kaggle folder of `count` links cycling through the photos of each class."""
    folder.mkdir()
    for label, name in enumerate(("cat", "dog")):
        sources = [
            p.resolve() for p, y in zip(photos.paths, photos.labels, strict=True) if y == label
        ]
        for i in range(count // 2):
            (folder / f"{name}.{i + 1}.jpg").symlink_to(sources[i % len(sources)])
    return find_photos(folder)


def measure_rss(photos_root: Path, cache: Path, batch_size: int) -> float:
    """Peak RSS (MB) of a fresh process training one epoch from the cache."""
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, __file__, "--rss-child", str(photos_root), str(cache)]
    command += ["--batch-size", str(batch_size)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["decoded"] == 0, "the child should read the cache, not decode"
    return report["peak_mb"]


def rss_child(photos_root: Path, cache: Path, batch_size: int) -> None:
    images = load_images(find_photos(photos_root), 64, False, cache_dir=cache, progress=False)
    everything = np.arange(len(images))
    mean, std = channel_stats(images.pixels, everything)
    batches = Batches(images.pixels, images.labels, everything, batch_size, mean, std)
    run_epoch(batches.epoch(0), 64)
    print(json.dumps({"decoded": images.decoded, "peak_mb": peak_rss_kib() / 1024}))


def peak_rss_kib() -> int:
    """This process's peak resident set, KiB.

    Linux's VmHWM, not getrusage's ru_maxrss: a child started by subprocess (vfork + exec)
    inherits its parent's ru_maxrss, so it would report the parent's peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux


class Timing(NamedTuple):
    wall: float  # seconds
    cpu: float  # CPU seconds of this process and of its children that ended (pool workers)

    def __str__(self) -> str:
        return f"{self.wall:.2f} s, {self.cpu:.2f} CPU-s"


def timed(work: Callable[..., object], *args: object, **kwargs: object) -> Timing:
    before, started = os.times(), time.perf_counter()
    work(*args, **kwargs)
    wall, after = time.perf_counter() - started, os.times()
    return Timing(wall, sum(after[:4]) - sum(before[:4]))


if __name__ == "__main__":
    main()
