"""Test-time views of photos: each photo itself, moved by small shifts, and mirrored.

Averaging P(dog) over views a network was trained to be indifferent to (training flips and shifts
its photos) cancels part of its error. A view is a fixed map from output pixel to source pixel,
so all views of a batch come from one gather along the flattened planes, on uint8 pixels or on
floats alike, and an exported graph folds it in as a constant index.
"""

import torch
from torch import Tensor

from catdog.batches import reflect


def view_count(mirror: bool, shift: int, size: int) -> int:
    """(2k + 1)² shifts with k = min(shift, size - 1), twice that with the mirror."""
    reach = min(shift, size - 1)
    return (2 * reach + 1) ** 2 * (2 if mirror else 1)


def describe(mirror: bool, shift: int, size: int) -> str:
    """'mirror, shifts of up to 2 px: 50 views', or '1 view' for the photo alone."""
    kinds = ["mirror"] * mirror + [f"shifts of up to {min(shift, size - 1)} px"] * (shift > 0)
    count = view_count(mirror, shift, size)
    return f"{', '.join(kinds)}: {count} views" if kinds else "1 view"


def view_sources(size: int, mirror: bool, shift: int) -> Tensor:
    """int64 (V, S·S): the flat source pixel of each output pixel, for V views of an S×S photo.

    The views are every offset (dy, dx) with |dy|, |dx| ≤ min(shift, S - 1), borders reflected
    as training's shifts reflect them, each one also mirrored left-right when `mirror`. View 0
    is the photo itself.
    """
    reach = min(shift, size - 1)
    ramp = torch.arange(size)
    offsets = [0, *(o for o in range(-reach, reach + 1) if o != 0)]
    sources = []
    for dy in offsets:
        for dx in offsets:
            rows = reflect(ramp + dy, size)
            cols = reflect(ramp + dx, size)
            for flipped in (False, True) if mirror else (False,):
                cols_seen = size - 1 - cols if flipped else cols
                sources.append((rows[:, None] * size + cols_seen[None, :]).flatten())
    return torch.stack(sources)


def gather_views(images: Tensor, sources: Tensor) -> Tensor:
    """(B, C, S, S) images → (B·V, C, S, S): the V views of photo 0, then those of photo 1, …"""
    batch, channels, size, _ = images.shape
    views = images.flatten(2).index_select(2, sources.flatten())  # (B, C, V·S·S)
    views = views.view(batch, channels, len(sources), size * size).transpose(1, 2)
    return views.reshape(batch * len(sources), channels, size, size)
