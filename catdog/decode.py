"""Decode one photo: upright, squashed to S x S, RGB or gray, as a uint8 (C, S, S) array.

Pillow does the decoding. JPEGs are decoded at a reduced size by libjpeg's own DCT scaling
first (`Image.draft`), which is several times faster than a full decode and stays within
about a grey level of it after the final resize.
"""

import os
import warnings

import numpy as np
from PIL import ExifTags, Image

from catdog.errors import DataError, UnreadablePhotoError

# Pillow's default filter: a plain Pillow loop gives the same pixels, only slower.
RESAMPLE = Image.Resampling.BICUBIC
DRAFT_FACTOR = 2  # JPEGs are decoded at >= 2x the target size before the final resize

_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_ALPHA = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def decode_photo(path: str | os.PathLike[str], image_size: int, grayscale: bool) -> np.ndarray:
    """Decode one photo to uint8 (C, S, S): upright, squashed to S x S, RGB or gray.

    JPEGs use the decoder's own DCT downscaling (`Image.draft`: 1/2, 1/4 or 1/8) to a size
    still >= DRAFT_FACTOR * S, then an antialiased bicubic resize to S x S. Decoding fewer
    pixels is faster, and the result stays within about a grey level of a full decode
    followed by the same resize. EXIF-rotated photos come out upright.
    Raises `UnreadablePhotoError` for anything Pillow can't decode, for a photo larger than
    Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`), and for a file name that
    is not valid UTF-8 (it could not be named in a log, a CSV or JSON).
    """
    check_image_size(image_size)
    mode = "L" if grayscale else "RGB"
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        raise UnreadablePhotoError(
            f"{os.fspath(path)!a}: the file name is not valid UTF-8; rename the file"
        ) from None
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its limit (and refuses above): refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            # draft only touches JPEGs; asking for 'L' lets libjpeg skip the colour work.
            draft_size = (DRAFT_FACTOR * image_size, DRAFT_FACTOR * image_size)
            image.draft("L" if grayscale else None, draft_size)
            small = to_mode(image, mode).resize((image_size, image_size), RESAMPLE)
            # Squashing to a square commutes with the EXIF flips and rotations, so turning
            # the small result upright is the same as turning the photo, and cheaper.
            pixels = np.asarray(_upright(small, _exif_orientation(image)))
    except MemoryError:
        raise
    except Exception as error:  # Pillow's plugins raise many types on corrupt files
        raise UnreadablePhotoError(
            f"{path}: can't decode this photo ({type(error).__name__}: {error}); "
            "delete or replace the file"
        ) from error
    return pixels[None] if grayscale else pixels.transpose(2, 0, 1).copy()


def to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow image to `mode` ('RGB' or 'L').

    Transparent pixels are composited on white (alpha a: out = a * colour + (1 - a) * 255).
    16-bit samples are scaled to 8 bits (v / 257); Pillow's own conversion would clip them
    at 255. A 32-bit 'I' image counts as 16-bit when its maximum exceeds 255, and an 'F'
    image with values in [0, 1] is scaled by 255.
    """
    if image.mode in _SIXTEEN_BIT:
        image = _eight_bit(image)
    if image.mode in _ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image if image.mode == mode else image.convert(mode)


def check_image_size(image_size: int) -> None:
    if not isinstance(image_size, int) or image_size < 1:
        raise DataError(f"image_size={image_size!r}: must be a positive whole number of pixels")


# EXIF orientation tag value -> the transpose that shows the photo upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # broken EXIF data shouldn't cost a photo: keep it as stored
        return 1


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    method = _UPRIGHT.get(orientation)
    return image if method is None else image.transpose(method)


def _eight_bit(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
    elif image.mode == "I":
        scale = 1 / 257 if values.size and values.max() > 255 else 1.0
    else:
        scale = 1 / 257  # 65535 / 257 = 255
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))
