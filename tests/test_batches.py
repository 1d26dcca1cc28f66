"""channel_stats, to_inputs and Batches against numpy/torchvision references."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as tvf

from catdog.batches import Batches, channel_stats, to_inputs, zoom_and_rotate
from catdog.config import AugmentConfig
from catdog.data import DataError

SIZE = 8


def coded_pixels(count: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Random uint8 (N, C, S, S) photos whose first two pixels spell their row number."""
    pixels = np.random.default_rng(seed).integers(0, 256, (count, channels, SIZE, SIZE))
    pixels = pixels.astype(np.uint8)
    pixels[:, 0, 0, 0] = np.arange(count) // 256
    pixels[:, 0, 0, 1] = np.arange(count) % 256
    return pixels


def row_numbers(x: torch.Tensor) -> list[int]:
    """Rows of a batch made with mean 0, std 1 and no augmentation (x = pixels / 255)."""
    codes = torch.round(x[:, :2] * 255).long()
    return (codes[:, 0] * 256 + codes[:, 1]).tolist()


def plain(pixels: np.ndarray, indices, batch_size: int, **options) -> Batches:
    labels = np.arange(len(pixels)) % 2
    channels = pixels.shape[1]
    zero, one = np.zeros(channels, np.float32), np.ones(channels, np.float32)
    return Batches(pixels, labels, np.asarray(indices), batch_size, zero, one, **options)


def epoch_list(batches: Batches, epoch: int, start: int = 0) -> list[tuple]:
    return list(batches.epoch(epoch, start))


def assert_same_batches(first: list[tuple], second: list[tuple]) -> None:
    assert len(first) == len(second)
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


# channel_stats


@pytest.mark.parametrize("channels", [1, 3])
def test_channel_stats_match_numpy_float64(channels: int) -> None:
    pixels = coded_pixels(1300, channels, seed=1)  # more rows than one read chunk
    pixels[:, -1] //= 3  # channels with different spreads
    indices = np.random.default_rng(2).choice(1300, 1100, replace=False)  # unsorted rows
    mean, std = channel_stats(pixels, indices)
    reference = pixels[indices].astype(np.float64) / 255.0
    assert mean.dtype == std.dtype == np.float32 and mean.shape == std.shape == (channels,)
    np.testing.assert_allclose(mean, reference.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, reference.std(axis=(0, 2, 3)), rtol=1e-6)


def test_channel_stats_reads_a_memmap(tmp_path: Path) -> None:
    pixels = coded_pixels(50)
    np.save(tmp_path / "p.npy", pixels)
    mapped = np.load(tmp_path / "p.npy", mmap_mode="r")
    assert [a.tolist() for a in channel_stats(mapped, np.arange(10, 50))] == [
        a.tolist() for a in channel_stats(pixels, np.arange(10, 50))
    ]


def test_channel_stats_needs_rows() -> None:
    with pytest.raises(DataError, match="no rows"):
        channel_stats(coded_pixels(4), np.array([], dtype=np.int64))


# to_inputs


def test_to_inputs_normalises_and_flattens_channel_major() -> None:
    pixels = coded_pixels(5)
    mean = np.array([0.4, 0.5, 0.6], np.float32)
    std = np.array([0.2, 0.25, 0.3], np.float32)
    x = to_inputs(pixels, mean, std)
    reference = (pixels / 255.0 - mean[:, None, None]) / std[:, None, None]
    assert x.dtype == torch.float32 and x.shape == (5, 3 * SIZE * SIZE)
    np.testing.assert_allclose(x.numpy(), reference.reshape(5, -1), atol=1e-5)
    # channel-major: feature c*S*S + i*S + j is pixel (c, i, j)
    assert x[2, 1 * SIZE * SIZE + 3 * SIZE + 4].item() == pytest.approx(reference[2, 1, 3, 4], 1e-5)
    assert torch.equal(to_inputs(torch.from_numpy(pixels), mean, std, "cpu"), x)


def test_to_inputs_takes_only_uint8() -> None:
    with pytest.raises(TypeError, match="uint8"):
        to_inputs(np.zeros((1, 3, 2, 2), np.float32), np.zeros(3), np.ones(3))


# Batches: order, determinism, resume


def test_one_epoch_covers_the_indices_once_with_aligned_labels() -> None:
    pixels = coded_pixels(100)
    indices = np.arange(3, 100, 2)  # 49 rows
    batches = plain(pixels, indices, 10)
    assert len(batches) == 5
    seen = []
    for x, y in batches.epoch(0):
        rows = row_numbers(x)
        assert rows == sorted(rows)  # ascending within a batch
        assert y.dtype == torch.float32 and y.tolist() == [r % 2 for r in rows]
        seen += rows
    assert [len(x) for x, _ in batches.epoch(0)] == [10, 10, 10, 10, 9]
    assert sorted(seen) == indices.tolist()
    assert seen != indices.tolist()  # shuffled


def test_no_shuffle_keeps_the_given_order() -> None:
    batches = plain(coded_pixels(30), np.arange(30), 7, shuffle=False)
    assert next(row_numbers(x) for x, _ in batches.epoch(5)) == list(range(7))


def test_permutation_depends_only_on_seed_and_epoch() -> None:
    pixels = coded_pixels(200)
    first = plain(pixels, np.arange(200), 16, seed=4)
    for epoch in range(3):
        epoch_list(first, epoch)
    fresh = plain(pixels, np.arange(200), 16, seed=4)
    assert_same_batches(epoch_list(first, 3), epoch_list(fresh, 3))
    assert row_numbers(epoch_list(fresh, 3)[0][0]) != row_numbers(epoch_list(fresh, 4)[0][0])
    other_seed = plain(pixels, np.arange(200), 16, seed=5)
    assert row_numbers(epoch_list(fresh, 3)[0][0]) != row_numbers(epoch_list(other_seed, 3)[0][0])


ALL_AUGMENTS = AugmentConfig(
    hflip=True, shift=2, brightness=0.3, contrast=0.3, zoom=0.15, rotate=12
)
WITH_MIXUP = AugmentConfig(
    hflip=True, shift=2, brightness=0.3, contrast=0.3, zoom=0.15, rotate=12, mixup=0.4
)


@pytest.mark.parametrize("augment", [None, ALL_AUGMENTS, WITH_MIXUP])
def test_resume_mid_epoch_sees_the_same_batches(augment: AugmentConfig | None) -> None:
    pixels = coded_pixels(90)
    uninterrupted = epoch_list(plain(pixels, np.arange(90), 8, seed=9, augment=augment), 2)
    for start in (0, 1, 6, 11):
        resumed = plain(pixels, np.arange(90), 8, seed=9, augment=augment)  # a new process
        assert_same_batches(epoch_list(resumed, 2, start), uninterrupted[start:])
    assert epoch_list(resumed, 2, len(resumed)) == []


def test_augmentation_is_deterministic_and_varies_by_batch_and_epoch() -> None:
    pixels = np.repeat(coded_pixels(1), 32, axis=0)  # the same photo 32 times
    batches = plain(pixels, np.arange(32), 16, seed=1, augment=ALL_AUGMENTS)
    again = plain(pixels, np.arange(32), 16, seed=1, augment=ALL_AUGMENTS)
    assert_same_batches(epoch_list(batches, 0), epoch_list(again, 0))
    (x0, _), (x1, _) = epoch_list(batches, 0)
    (x2, _), _ = epoch_list(batches, 1)
    assert not torch.equal(x0, x1) and not torch.equal(x0, x2)
    assert len({tuple(row.tolist()) for row in x0}) > 8  # images of a batch differ


# Batches: sharding


@pytest.mark.parametrize("augment", [None, ALL_AUGMENTS, WITH_MIXUP])
def test_ranks_split_each_global_batch_and_together_match_one_process(
    augment: AugmentConfig | None,
) -> None:
    pixels = coded_pixels(50)
    single = epoch_list(plain(pixels, np.arange(50), 12, seed=3, augment=augment), 1)
    shards = [
        epoch_list(
            plain(pixels, np.arange(50), 12, seed=3, augment=augment, rank=r, world_size=3), 1
        )
        for r in range(3)
    ]
    assert all(len(shard) == len(single) == 5 for shard in shards)
    for b, (x, y) in enumerate(single):
        for r in range(3):
            xr, yr = shards[r][b]
            torch.testing.assert_close(xr, x[r::3], rtol=0, atol=1e-6)
            assert torch.equal(yr, y[r::3])
    assert [len(shards[r][-1][0]) for r in range(3)] == [1, 1, 0]  # last batch: 2 rows


def test_bad_rank_or_indices() -> None:
    pixels = coded_pixels(4)
    with pytest.raises(ValueError, match="rank"):
        plain(pixels, [0, 1], 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="indices"):
        plain(pixels, [0, 4], 2)
    with pytest.raises(ValueError, match="start"):
        epoch_list(plain(pixels, [0, 1], 2), 0, start=2)


def test_constant_channel_is_refused() -> None:
    with pytest.raises(DataError, match="std"):
        Batches(coded_pixels(4), np.zeros(4), np.arange(4), 2, np.zeros(3), np.array([1, 0, 1]))


# Batches: augmentation shapes, ranges and maths


def photos_and_augmented(augment: AugmentConfig, levels: tuple[int, int] = (0, 256)):
    """Originals (B, C, S, S) in [0, 1] and their augmented versions, in batch order."""
    count, seed = 64, 0
    pixels = np.random.default_rng(seed).integers(*levels, (count, 3, SIZE, SIZE), dtype=np.uint8)
    batches = plain(pixels, np.arange(count), 16, seed=seed, augment=augment)
    for x, _ in batches.epoch(0):
        assert x.dtype == torch.float32 and x.shape == (len(x), 3 * SIZE * SIZE)
        # mean 0, std 1: x is the augmented photo / 255, which stays in [0, 1]
        assert x.min() >= 0.0 and x.max() <= 1.0
    order = [np.sort(o) for o in np.array_split(batches.order(0), 4)]
    originals = torch.from_numpy(pixels[np.concatenate(order)]).double() / 255.0
    augmented = torch.cat([x for x, _ in batches.epoch(0)]).double().reshape(originals.shape)
    return originals, augmented


def test_default_augment_is_off() -> None:
    pixels = coded_pixels(20)
    assert_same_batches(
        epoch_list(plain(pixels, np.arange(20), 5, augment=AugmentConfig()), 0),
        epoch_list(plain(pixels, np.arange(20), 5), 0),
    )


def test_hflip_mirrors_about_half_the_photos() -> None:
    originals, augmented = photos_and_augmented(AugmentConfig(hflip=True))
    flipped = [torch.allclose(a, o.flip(-1)) for a, o in zip(augmented, originals, strict=True)]
    kept = [torch.allclose(a, o) for a, o in zip(augmented, originals, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 16 <= sum(flipped) <= 48


def test_shift_matches_reflect_pad_and_crop() -> None:
    shift = 3
    originals, augmented = photos_and_augmented(AugmentConfig(shift=shift))
    offsets = set()
    for original, out in zip(originals.numpy(), augmented.numpy(), strict=True):
        padded = np.pad(original, ((0, 0), (shift, shift), (shift, shift)), mode="reflect")
        matches = [
            (dy, dx)
            for dy in range(2 * shift + 1)
            for dx in range(2 * shift + 1)
            if np.allclose(padded[:, dy : dy + SIZE, dx : dx + SIZE], out)
        ]
        assert matches, "no reflect-pad crop gives this image"
        offsets.add(matches[0])
    assert len(offsets) > 10  # offsets vary across photos


def test_zoom_and_rotate_closed_forms() -> None:
    images = torch.rand(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    ones, zeros = torch.ones(5), torch.zeros(5)
    torch.testing.assert_close(zoom_and_rotate(images, ones, zeros), images, rtol=0, atol=1e-6)
    quarter = zoom_and_rotate(images, None, torch.full((5,), math.pi / 2))
    torch.testing.assert_close(quarter, torch.rot90(images, -1, dims=(-2, -1)), rtol=0, atol=1e-5)
    grey = torch.full((5, 3, SIZE, SIZE), 0.3)
    turned = zoom_and_rotate(grey, torch.linspace(0.8, 1.2, 5), torch.linspace(-1, 1, 5))
    torch.testing.assert_close(turned, grey, rtol=0, atol=1e-6)  # reflection: nothing from outside


def test_zoom_and_rotate_match_torchvision_inside_the_photo() -> None:
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    images = torch.rand(6, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    # Zoomed in by 1.45 or more, every sample of any turn lies inside the photo, where the
    # border rule (ours reflects, torchvision fills) plays no part. torchvision's angle is
    # clockwise, in degrees.
    for zoom, angle in ((1.45, 0.0), (1.5, 0.7), (1.6, -2.5), (2.0, 3.1)):
        ours = zoom_and_rotate(images, torch.full((6,), zoom), torch.full((6,), angle))
        theirs = tvf.affine(
            images, angle=math.degrees(angle), translate=[0, 0], scale=zoom, shear=[0.0, 0.0],
            interpolation=InterpolationMode.BILINEAR,
        )  # fmt: skip
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_zoom_and_rotation_change_photos_within_range() -> None:
    originals, augmented = photos_and_augmented(AugmentConfig(zoom=0.2, rotate=20))
    pairs = zip(augmented, originals, strict=True)
    changed = [not torch.allclose(a, o, atol=1e-3) for a, o in pairs]
    assert sum(changed) >= 60  # of 64: z and θ are continuous, so almost surely all differ
    with pytest.raises(ValueError):
        AugmentConfig(zoom=1.0)  # z would reach 0
    with pytest.raises(ValueError):
        AugmentConfig(rotate=181)


def test_brightness_and_contrast_match_torchvision() -> None:
    # Pixel levels chosen so that no factor in [0.6, 1.4] pushes a value past 0 or 1.
    for augment, levels in (
        (AugmentConfig(brightness=0.4), (0, 160)),
        (AugmentConfig(contrast=0.4), (64, 192)),
    ):
        originals, augmented = photos_and_augmented(augment, levels)
        factors = []
        for original, out in zip(originals, augmented, strict=True):
            if augment.brightness:
                factor = (out.sum() / original.sum()).item()
                reference = tvf.adjust_brightness(original, factor)
            else:
                factor = (out.std() / original.std()).item()
                reference = tvf.adjust_contrast(original, factor)
            factors.append(factor)
            # torchvision's luma weights are rounded differently (0.2989 vs 0.299)
            torch.testing.assert_close(out, reference, rtol=0, atol=1e-4)
        assert min(factors) >= 0.6 - 1e-6 and max(factors) <= 1.4 + 1e-6
        assert max(factors) - min(factors) > 0.3


def label_coded_batches(alpha: float, photos: int = 64, batch_size: int = 16, **augments):
    """Batches of photos whose every pixel is 255 × label (cats black, dogs white)."""
    labels = np.arange(photos) % 2
    pixels = np.repeat(labels.astype(np.uint8) * 255, 3 * 4 * 4).reshape(photos, 3, 4, 4)
    mean, std = np.full(3, 0.5), np.full(3, 0.5)
    return Batches(
        pixels, labels, np.arange(photos), batch_size, mean, std, seed=2,
        augment=AugmentConfig(mixup=alpha, **augments),
    )  # fmt: skip


@pytest.mark.parametrize("augments", [{}, {"hflip": True, "shift": 1}])
def test_mixup_blends_photo_and_label_with_the_same_weight(augments: dict) -> None:
    # A mixed photo is λ·x_i + (1 - λ)·x_j and its label λ·y_i + (1 - λ)·y_j: with pixels
    # 255·y, every pixel of a mixed photo is 255 × its mixed label.
    batches = label_coded_batches(0.4, **augments)
    for x, y in epoch_list(batches, 0):
        pixels = x * 0.5 + 0.5  # undo the normalisation: back to [0, 1]
        assert torch.allclose(pixels, y[:, None].expand_as(pixels), atol=1e-6)
        assert len(y) == 16 and bool(((y > 0) & (y < 1)).any())  # some labels are soft


@pytest.mark.parametrize("alpha", [0.4, 2.0])
def test_mixup_weights_follow_beta_alpha_alpha(alpha: float) -> None:
    # A cat mixed with a dog has label 1 - λ (λ on the cat), a dog with a cat λ: both are
    # Beta(α, α) draws, which has mean 1/2 and variance 1 / (4 (2α + 1)).
    batches = label_coded_batches(alpha, photos=4000, batch_size=500)
    labels = torch.cat([y for _, y in epoch_list(batches, 0)])
    mixed = labels[(labels > 0) & (labels < 1)]
    assert len(mixed) > 1500  # about half the rows have a partner of the other class
    assert abs(float(mixed.mean()) - 0.5) < 0.02
    assert abs(float(mixed.var()) - 1 / (4 * (2 * alpha + 1))) < 0.01


def test_mixup_off_keeps_hard_labels() -> None:
    for _, y in epoch_list(label_coded_batches(0.0, hflip=True), 0):
        assert set(y.tolist()) <= {0.0, 1.0}


def test_augment_config_validates_its_settings() -> None:
    with pytest.raises(ValueError, match="shift"):
        AugmentConfig(shift=-1)
    with pytest.raises(ValueError, match="brightness"):
        AugmentConfig(brightness=1.5)
    with pytest.raises(ValueError, match="mixup"):
        AugmentConfig(mixup=-0.1)
    with pytest.raises(ValueError, match="contrast"):
        AugmentConfig(contrast=-0.1)
    with pytest.raises(ValueError, match="mixup"):
        AugmentConfig(mixup=float("inf"))


def test_batches_from_a_memmap_match_to_inputs(tmp_path: Path) -> None:
    pixels = coded_pixels(40)
    np.save(tmp_path / "p.npy", pixels)
    mapped = np.load(tmp_path / "p.npy", mmap_mode="r")
    mean, std = channel_stats(mapped, np.arange(40))
    batches = Batches(mapped, np.arange(40) % 2, np.arange(40), 16, mean, std, seed=2)
    assert batches.pixels is mapped  # batches read rows; the array is never copied whole
    order = batches.order(0)
    for b, (x, y) in enumerate(batches.epoch(0)):
        rows = np.sort(order[16 * b : 16 * (b + 1)])
        torch.testing.assert_close(x, to_inputs(pixels[rows], mean, std), rtol=0, atol=1e-6)
        assert y.tolist() == (rows % 2).tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.cuda
@pytest.mark.parametrize("augment", [None, WITH_MIXUP])
def test_cuda_batches_match_cpu_from_photos_kept_on_the_gpu(augment: AugmentConfig | None) -> None:
    pixels = coded_pixels(64)
    cpu = epoch_list(plain(pixels, np.arange(64), 16, augment=augment), 0)
    on_gpu = plain(pixels, np.arange(64), 16, augment=augment, device="cuda")
    assert on_gpu._resident is not None and on_gpu._resident.device.type == "cuda"
    gpu = epoch_list(on_gpu, 0)
    for (xc, yc), (xg, yg) in zip(cpu, gpu, strict=True):
        assert xg.device.type == "cuda"
        torch.testing.assert_close(xg.cpu(), xc, rtol=0, atol=1e-5)
        assert torch.equal(yg.cpu(), yc)
