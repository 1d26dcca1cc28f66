"""Set photos aside as a judge: a POOL to train on and a JUDGE tree that no run sees.

Splits a photo folder (either layout catdog reads) class by class with catdog's own seeded
split, then links the photos, never copies them:

    OUT/pool/cat.N.jpg, OUT/pool/dog.N.jpg   Kaggle's flat layout, for data.root
    OUT/judge/cat/0.jpg, OUT/judge/dog/1.jpg  class folders, names that say nothing of the label

so that `catdog evaluate RUN --data OUT/judge` scores a run on photos it never had, the way the
judged photos score the default (docs/accuracy.md, "Refit on everything"):

    python scripts/holdout.py ../shared/data/dogs-vs-cats/train /tmp/holdout --fraction 0.2
"""

import argparse
import sys
from pathlib import Path

from catdog.data import find_photos, stratified_split
from catdog.errors import DataError

CLASSES = ("cat", "dog")


def link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source.resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="a folder catdog can train on")
    parser.add_argument("out", type=Path, help="new folder for pool/ and judge/")
    parser.add_argument("--fraction", type=float, default=0.2, help="judge's share per class")
    parser.add_argument("--seed", type=int, default=1234, help="draws the judge photos")
    args = parser.parse_args(argv)
    if args.out.exists():
        print(f"error: {args.out} exists; name a new folder", file=sys.stderr)
        return 2
    try:
        photos = find_photos(args.photos)
        pool, judge = stratified_split(photos.labels, args.fraction, args.seed)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for number, row in enumerate(pool):
        path = photos.paths[row]
        link(path, args.out / "pool" / f"{CLASSES[photos.labels[row]]}.{number}{path.suffix}")
    for number, row in enumerate(judge):
        path = photos.paths[row]
        link(path, args.out / "judge" / CLASSES[photos.labels[row]] / f"{number}{path.suffix}")
    print(f"{args.out}: pool/ {len(pool)} photos, judge/ {len(judge)} photos (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
