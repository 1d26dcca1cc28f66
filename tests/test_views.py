"""Test-time views: each against an independent reference (reflect padding, flips, training's
own shifts), and their average in `predict_pixels` against separate forward passes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from catdog.batches import _flip_and_shift, to_inputs
from catdog.config import Config
from catdog.evaluate import chosen_views
from catdog.losses import LOSSES
from catdog.metrics import measure, predict_pixels
from catdog.model import MLP
from catdog.views import describe, gather_views, view_count, view_sources


def shifted_reference(images: torch.Tensor, dy: int, dx: int, reach: int) -> torch.Tensor:
    """Output (i, j) = input (reflect(i + dy), reflect(j + dx)), by reflect padding and a crop."""
    size = images.shape[-1]
    padded = F.pad(images.double(), (reach,) * 4, mode="reflect")
    return padded[..., reach + dy : reach + dy + size, reach + dx : reach + dx + size]


def reference_views(images: torch.Tensor, mirror: bool, shift: int) -> list[torch.Tensor]:
    """The views `view_sources` promises, in its order, built without it."""
    reach = min(shift, images.shape[-1] - 1)
    offsets = [0, *(o for o in range(-reach, reach + 1) if o != 0)]
    views = []
    for dy in offsets:
        for dx in offsets:
            views.append(shifted_reference(images, dy, dx, reach).to(images.dtype))
            if mirror:  # the mirror image, shifted alike (as training flips, then shifts)
                views.append(shifted_reference(images.flip(-1), dy, dx, reach).to(images.dtype))
    return views


@pytest.mark.parametrize(("mirror", "shift"), [(False, 0), (True, 0), (False, 1), (True, 2)])
def test_views_match_reflect_padding_and_flips(mirror: bool, shift: int) -> None:
    images = torch.randint(0, 256, (3, 2, 5, 5), dtype=torch.uint8)
    sources = view_sources(5, mirror, shift)
    assert sources.shape == (view_count(mirror, shift, 5), 25)
    views = gather_views(images, sources).view(3, len(sources), 2, 5, 5)
    for v, expected in enumerate(reference_views(images, mirror, shift)):
        assert torch.equal(views[:, v], expected), f"view {v}"
    assert torch.equal(views[:, 0], images)  # view 0 is the photo itself


def test_each_view_of_a_16_px_photo_is_another_map() -> None:
    sources = view_sources(16, mirror=True, shift=2)
    assert len({tuple(row.tolist()) for row in sources}) == len(sources) == 50


def test_a_shift_view_is_the_shift_training_draws() -> None:
    images = torch.randint(0, 256, (1, 3, 6, 6), dtype=torch.uint8)
    sources = view_sources(6, mirror=True, shift=2)
    views = gather_views(images, sources)
    trained_on = []
    for dy in (0, -2, -1, 1, 2):
        for dx in (0, -2, -1, 1, 2):
            for flip in (False, True):
                trained_on.append(
                    _flip_and_shift(images, torch.tensor([flip]), torch.tensor([[dy, dx]]))
                )
    assert torch.equal(views, torch.cat(trained_on))


def test_shifts_stop_at_one_image_width() -> None:
    assert view_count(False, 5, 3) == 25  # offsets -2..2 on a 3-px photo
    assert view_sources(3, False, 5).shape == (25, 9)
    assert int(view_sources(3, False, 5).max()) == 8


@pytest.mark.parametrize(("mirror", "shift"), [(True, 0), (False, 1), (True, 1)])
def test_prediction_averages_every_view_and_member(mirror: bool, shift: int) -> None:
    torch.manual_seed(0)
    ensemble = MLP(3 * 4 * 4, (6,), members=3).eval()
    pixels = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
    logits = predict_pixels(ensemble, pixels, mean, std, torch.device("cpu"), mirror, shift)
    assert logits.shape == (5,)
    with torch.no_grad():
        p = torch.stack(
            [torch.sigmoid(ensemble(to_inputs(v, mean, std))) for v in
             reference_views(pixels, mirror, shift)]
        ).mean((0, 2))  # fmt: skip
    torch.testing.assert_close(torch.sigmoid(logits), p, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("tta", "tta_shift", "chosen"),
    [(None, None, (True, 1)), (False, None, (False, 0)), (True, None, (True, 1)),
     (None, 2, (True, 2)), (False, 2, (False, 2)), (None, 0, (True, 0))],
)  # fmt: skip
def test_no_tta_turns_every_view_off_unless_shifts_are_named(
    tta: bool | None, tta_shift: int | None, chosen: tuple[bool, int]
) -> None:
    config = Config.model_validate({"eval": {"tta": True, "tta_shift": 1}})
    assert chosen_views(config, tta, tta_shift) == chosen


def test_views_are_described_as_counted() -> None:
    assert describe(True, 2, 16) == "mirror, shifts of up to 2 px: 50 views"
    assert describe(False, 5, 3) == "shifts of up to 2 px: 25 views"  # capped like the views
    assert describe(True, 0, 16) == "mirror: 2 views" and describe(False, 0, 16) == "1 view"


def test_views_fill_batches_of_rows_and_keep_the_photos_order() -> None:
    torch.manual_seed(0)
    ensemble = MLP(3 * 4 * 4, (6,), members=2).eval()
    pixels = np.random.default_rng(0).integers(0, 256, (7, 3, 4, 4), dtype=np.uint8)
    labels = np.arange(7) % 2
    mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)

    def probabilities(batch_size: int) -> np.ndarray:
        return measure(
            ensemble, pixels, labels, np.arange(7), mean, std, LOSSES["bce"],
            torch.device("cpu"), batch_size=batch_size, tta=True, tta_shift=1,
        ).probabilities  # fmt: skip

    one_photo_a_batch = probabilities(18)  # 18 views: one photo per forward pass
    np.testing.assert_allclose(one_photo_a_batch, probabilities(1024), rtol=0, atol=1e-6)
    np.testing.assert_allclose(one_photo_a_batch, probabilities(1), rtol=0, atol=1e-6)
