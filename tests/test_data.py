"""find_photos (both layouts, errors) and stratified_split, on real files in tmp_path."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog.data import DataError, find_photos, label_from_name, natural_key, stratified_split

REAL_PHOTOS = Path("../shared/data/dogs-vs-cats/train")


def write_jpeg(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (value, value, value)).save(path, "JPEG")
    return path


def names(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_flat_layout_labels_from_name_in_natural_order(tmp_path: Path) -> None:
    for name in ["dog.10.jpg", "cat.2.jpg", "cat.10.jpg", "DOG.1.JPEG", "Cat.1.png", "dogs_3.webp"]:
        write_jpeg(tmp_path / name)
    photos = find_photos(tmp_path)
    assert photos.layout == "flat"
    assert names(photos.paths, tmp_path) == [
        "Cat.1.png",
        "cat.2.jpg",
        "cat.10.jpg",
        "DOG.1.JPEG",
        "dog.10.jpg",
        "dogs_3.webp",
    ]
    assert photos.labels.dtype == np.int64
    assert photos.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert photos.unlabelled == []


def test_flat_layout_sets_aside_unlabelled_and_ignores_hidden_and_non_images(
    tmp_path: Path,
) -> None:
    write_jpeg(tmp_path / "cat.1.jpg")
    write_jpeg(tmp_path / "dog.1.jpg")
    write_jpeg(tmp_path / "12.jpg")  # Kaggle's test set: no label in the name
    write_jpeg(tmp_path / "catalog.jpg")  # starts with "cat" but isn't one
    write_jpeg(tmp_path / ".dog.2.jpg")  # hidden
    (tmp_path / "cat.3.txt").write_text("not an image")
    (tmp_path / "Thumbs.db").write_bytes(b"\0")
    photos = find_photos(tmp_path)
    assert names(photos.paths, tmp_path) == ["cat.1.jpg", "dog.1.jpg"]
    assert names(photos.unlabelled, tmp_path) == ["12.jpg", "catalog.jpg"]


@pytest.mark.parametrize("cat_dir, dog_dir", [("cat", "dog"), ("cats", "dogs"), ("Cat", "Dog")])
def test_class_folder_namings(tmp_path: Path, cat_dir: str, dog_dir: str) -> None:
    write_jpeg(tmp_path / cat_dir / "1.jpg")
    write_jpeg(tmp_path / cat_dir / "2.jpg")
    write_jpeg(tmp_path / dog_dir / "1.jpg")
    photos = find_photos(tmp_path)
    assert photos.layout == "folders"
    assert names(photos.paths, tmp_path) == [
        f"{cat_dir}/1.jpg",
        f"{cat_dir}/2.jpg",
        f"{dog_dir}/1.jpg",
    ]
    assert photos.labels.tolist() == [0, 0, 1]


def test_class_folders_any_case_nested_hidden_and_unlabelled(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "CATS" / "a" / "b" / "deep.jpg")
    write_jpeg(tmp_path / "CATS" / "x10.png")
    write_jpeg(tmp_path / "CATS" / "x9.png")
    write_jpeg(tmp_path / "CATS" / ".thumbs" / "hidden.jpg")  # hidden folder
    write_jpeg(tmp_path / "dOgS" / ".hidden.jpg")  # hidden file
    write_jpeg(tmp_path / "dOgS" / "pup.JPG")
    write_jpeg(tmp_path / "loose.jpg")  # in root: no class folder
    write_jpeg(tmp_path / "other" / "cat.1.jpg")  # not a class folder: ignored
    photos = find_photos(tmp_path)
    assert photos.layout == "folders"
    assert names(photos.paths, tmp_path) == [
        "CATS/a/b/deep.jpg",
        "CATS/x9.png",
        "CATS/x10.png",
        "dOgS/pup.JPG",
    ]
    assert photos.labels.tolist() == [0, 0, 0, 1]
    assert names(photos.unlabelled, tmp_path) == ["loose.jpg"]


def test_order_is_deterministic(tmp_path: Path) -> None:
    for i in range(30):
        write_jpeg(tmp_path / f"{'cat' if i % 2 else 'dog'}.{i}.jpg")
    assert find_photos(tmp_path).paths == find_photos(tmp_path).paths


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope: no such folder; expected Kaggle's flat layout"):
        find_photos(tmp_path / "nope")


def test_no_photos(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="no labelled photos found; expected"):
        find_photos(tmp_path)


def test_only_unlabelled_photos(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "1.jpg")
    with pytest.raises(DataError, match="no labelled photos found"):
        find_photos(tmp_path)


@pytest.mark.parametrize(
    "files, missing",
    [
        (["cat.1.jpg", "cat.2.jpg"], "dog"),
        (["dog/1.jpg"], "cat"),
        (["Cat/1.jpg", "Dog/x.txt"], "dog"),
    ],
)
def test_one_class_only(tmp_path: Path, files: list[str], missing: str) -> None:
    for name in files:
        write_jpeg(tmp_path / name)
    with pytest.raises(DataError, match=f"no {missing} photos found \\(only one class"):
        find_photos(tmp_path)


def test_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        find_photos(tmp_path)
    assert "\n" not in str(error.value)
    assert str(tmp_path) in str(error.value)


def test_label_from_name_and_natural_key() -> None:
    assert [label_from_name(n) for n in ["cat.1.jpg", "Dog-2.png", "dog12.jpg", "cats.jpg"]] == [
        0,
        1,
        1,
        0,
    ]
    assert [label_from_name(n) for n in ["catalog.jpg", "hotdog.jpg", "1.jpg"]] == [None] * 3
    assert sorted(["a10", "a9", "a100", "A1"], key=natural_key) == ["A1", "a9", "a10", "a100"]


def test_real_photo_folder() -> None:
    if not REAL_PHOTOS.is_dir():
        pytest.skip(f"{REAL_PHOTOS} is absent (the Kaggle photos are not in this checkout)")
    photos = find_photos(REAL_PHOTOS)
    assert photos.layout == "flat"
    assert len(photos) == 6000
    assert np.bincount(photos.labels).tolist() == [3000, 3000]
    assert photos.paths[:3] == [REAL_PHOTOS / f"cat.{i}.jpg" for i in (1, 2, 3)]


# stratified_split


def test_split_is_stratified_disjoint_covering_and_sorted() -> None:
    labels = np.array([0] * 70 + [1] * 30)
    train, val = stratified_split(labels, 0.2, seed=3)
    assert train.dtype == val.dtype == np.int64
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.union1d(train, val), np.arange(100))
    assert np.bincount(labels[val]).tolist() == [14, 6]


def test_split_is_deterministic_from_seed() -> None:
    labels = np.random.default_rng(0).integers(0, 2, 500)
    first = stratified_split(labels, 0.25, seed=7)
    again = stratified_split(labels, 0.25, seed=7)
    other = stratified_split(labels, 0.25, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])


def test_split_fraction_zero_gives_empty_validation() -> None:
    train, val = stratified_split(np.array([0, 1, 1, 0]), 0.0, seed=0)
    assert train.tolist() == [0, 1, 2, 3]
    assert val.dtype == np.int64 and val.size == 0


def test_split_keeps_a_training_photo_per_class() -> None:
    labels = np.array([0, 1, 1, 1])
    train, val = stratified_split(labels, 0.9, seed=0)
    assert sorted(labels[train].tolist()) == [0, 1]
    assert sorted(labels[val].tolist()) == [1, 1]


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(DataError, match="val_fraction"):
        stratified_split(np.array([0, 1]), fraction, seed=0)
