"""Kaggle's Dogs vs. Cats submission: `id,label`, one row per photo of the unlabelled test1/.

The id is the number in the photo's file name (`test1/123.jpg` → 123) and rows are sorted by
it numerically (1, 2, …, 10, not 1, 10, 2). The label is P(dog) clipped to [ε, 1 − ε]: the
competition scores log-loss, where one confident mistake, P(dog) = 1e-7 for a dog, costs
−ln(1e-7) ≈ 16 nats, as much as 3,000 photos right at 0.995. The default ε = 0.005 caps any
photo's cost at −ln(0.005) ≈ 5.3 nats, and costs a correct, certain answer only 0.005 nats.
A photo that can't be decoded gets 0.5 (cost ln 2), since Kaggle wants a row for every id.
"""

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from catdog.errors import ConfigError, DataError
from catdog.predict import Prediction

DEFAULT_EPSILON = 0.005
UNREADABLE_LABEL = 0.5
_NUMBER = re.compile(r"\d+")


def photo_id(path: Path) -> int:
    """The one number in the file name (without its extension); refuse none or several."""
    numbers = _NUMBER.findall(path.stem)
    if not numbers:
        raise DataError(
            f"{path}: no number in this file name, so no Kaggle id; Kaggle's test1/ photos "
            "are named 1.jpg, 2.jpg, ..."
        )
    if len(numbers) > 1:
        raise DataError(
            f"{path}: several numbers in this file name ({', '.join(numbers)}), so no single "
            "Kaggle id; Kaggle's test1/ photos are named 1.jpg, 2.jpg, ..."
        )
    return int(numbers[0])


def photo_ids(paths: Sequence[Path]) -> list[int]:
    """Each photo's id, checked before any photo is decoded; two photos may not share one."""
    ids: list[int] = []
    first_with: dict[int, Path] = {}
    for path in paths:
        number = photo_id(path)
        if number in first_with:
            raise DataError(
                f"{path}: Kaggle id {number} again (also {first_with[number]}); "
                "predict one test folder at a time"
            )
        first_with[number] = path
        ids.append(number)
    return ids


def check_epsilon(epsilon: float) -> float:
    if not 0.0 <= epsilon < 0.5:
        raise ConfigError(f"--clip {epsilon}: must be in [0, 0.5)")
    return epsilon


def submission(predictions: Sequence[Prediction], epsilon: float = DEFAULT_EPSILON) -> str:
    """The CSV text: header `id,label`, rows sorted by id, labels P(dog) clipped to [ε, 1 − ε]."""
    check_epsilon(epsilon)
    ids = photo_ids([p.path for p in predictions])
    labels = np.array(
        [UNREADABLE_LABEL if p.p_dog is None else p.p_dog for p in predictions], dtype=np.float64
    )
    labels = np.clip(labels, epsilon, 1.0 - epsilon)
    rows = sorted(zip(ids, labels, strict=True))
    return "id,label\n" + "".join(f"{number},{label:.6f}\n" for number, label in rows)
