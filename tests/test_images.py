"""decode_photo on real image files of every odd kind, written by the tests."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog.data import DataError, find_photos
from catdog.images import RESAMPLE, UnreadablePhotoError, decode_photo, to_mode

REAL_PHOTOS = Path("../shared/data/dogs-vs-cats/train")
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def photo_like(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like uint8 (H, W, 3) image: smooth shading, blobs, fine texture, sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.empty((height, width, 3))
    for c in range(3):
        image[..., c] = 60 + 120 * rng.random() * x + 80 * rng.random() * y
    for _ in range(6):  # soft blobs of colour, like objects out of focus
        cy, cx, r = rng.random(), rng.random(), 0.05 + 0.2 * rng.random()
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / r**2)
        image += blob[..., None] * rng.uniform(-80, 80, 3)
    angle = rng.uniform(0, np.pi)
    fur = np.sin(90 * (x * np.cos(angle) + y * np.sin(angle)))  # fine stripes
    image += 12 * fur[..., None] + rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def halves(left: tuple[int, ...], right: tuple[int, ...], mode: str = "RGB") -> Image.Image:
    """A 40 x 20 image, left half `left`, right half `right`."""
    image = Image.new(mode, (40, 20), left)
    image.paste(Image.new(mode, (20, 20), right), (20, 0))
    return image


def assert_halves(pixels: np.ndarray, left: tuple[int, ...], right: tuple[int, ...]) -> None:
    """Left and right quarters of a decoded (C, S, S) photo have the expected colours."""
    size = pixels.shape[-1]
    quarter = size // 4
    left_mean = pixels[:, :, :quarter].reshape(len(left), -1).mean(axis=1)
    right_mean = pixels[:, :, -quarter:].reshape(len(right), -1).mean(axis=1)
    np.testing.assert_allclose(left_mean, left, atol=3)
    np.testing.assert_allclose(right_mean, right, atol=3)


def full_decode(path: Path, size: int, mode: str) -> np.ndarray:
    """The slow reference: decode every pixel, then the same resize."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert(mode).resize((size, size), RESAMPLE))
    return pixels[None] if mode == "L" else pixels.transpose(2, 0, 1)


# quality


@pytest.mark.parametrize("grayscale", [False, True])
@pytest.mark.parametrize("size", [32, 64])
def test_draft_decode_stays_close_to_full_decode(
    tmp_path: Path, size: int, grayscale: bool
) -> None:
    mode = "L" if grayscale else "RGB"
    errors = []
    for seed, (height, width) in enumerate([(480, 640), (1023, 700), (300, 280)]):
        path = tmp_path / f"{seed}.jpg"
        Image.fromarray(photo_like(height, width, seed)).save(path, quality=90)
        ours = decode_photo(path, size, grayscale)
        assert ours.shape == ((1 if grayscale else 3), size, size)
        assert ours.dtype == np.uint8
        errors.append(np.abs(ours.astype(float) - full_decode(path, size, mode)).mean())
    # Below one grey level on average: the DCT downscaling loses nothing visible.
    assert max(errors) < 1.0, errors


def test_draft_decode_on_real_photos() -> None:
    if not REAL_PHOTOS.is_dir():
        pytest.skip(f"{REAL_PHOTOS} is absent (the Kaggle photos are not in this checkout)")
    paths = find_photos(REAL_PHOTOS).paths[::200]
    errors = [
        np.abs(decode_photo(p, 64, False).astype(float) - full_decode(p, 64, "RGB")).mean()
        for p in paths
    ]
    assert np.mean(errors) < 1.0 and max(errors) < 3.0, errors


# formats and modes


@pytest.mark.parametrize(
    "suffix, options",
    [(".png", {}), (".gif", {}), (".webp", {"lossless": True}), (".bmp", {}), (".jpg", {})],
)
def test_formats(tmp_path: Path, suffix: str, options: dict) -> None:
    path = tmp_path / f"photo{suffix}"
    halves(RED, BLUE).save(path, **options)
    pixels = decode_photo(path, 16, grayscale=False)
    tolerance = 12 if suffix == ".jpg" else 3  # JPEG's chroma subsampling blurs the edge
    left = pixels[:, :, :4].reshape(3, -1).mean(axis=1)
    right = pixels[:, :, -4:].reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(left, RED, atol=tolerance)
    np.testing.assert_allclose(right, BLUE, atol=tolerance)


def test_grayscale_photo_gives_equal_rgb_channels(tmp_path: Path) -> None:
    path = tmp_path / "gray.jpg"
    halves((30,), (220,), mode="L").save(path)
    pixels = decode_photo(path, 16, grayscale=False)
    assert pixels.shape == (3, 16, 16)
    assert np.array_equal(pixels[0], pixels[1]) and np.array_equal(pixels[1], pixels[2])
    assert_halves(pixels[:1], (30,), (220,))


def test_grayscale_output_uses_luma(tmp_path: Path) -> None:
    path = tmp_path / "colour.png"
    halves(RED, BLUE).save(path)
    pixels = decode_photo(path, 16, grayscale=True)
    assert pixels.shape == (1, 16, 16)
    assert_halves(pixels, (round(0.299 * 255),), (round(0.114 * 255),))


def test_palette_png(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    halves(RED, BLUE).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    assert Image.open(path).mode == "P"
    assert_halves(decode_photo(path, 16, False), RED, BLUE)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    halves((0, 255, 255, 0), (255, 255, 0, 0), mode="CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    pixels = decode_photo(path, 16, False)
    left = pixels[:, :, :4].reshape(3, -1).mean(axis=1)
    right = pixels[:, :, -4:].reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(left, RED, atol=8)
    np.testing.assert_allclose(right, BLUE, atol=8)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    values = np.full((20, 40), 65535, dtype=np.uint16)
    values[:, :20] = 257 * 40  # 40 in 8 bits
    values[:, 20:] = 257 * 200
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    assert_halves(decode_photo(path, 16, True), (40,), (200,))
    assert_halves(decode_photo(path, 16, False), (40, 40, 40), (200, 200, 200))


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.array([[257 * 40, 257 * 200]], dtype=np.int32), [40, 200]),  # 16-bit data in 'I'
        (np.array([[40, 200]], dtype=np.int32), [40, 200]),  # 8-bit data in 'I'
        (np.array([[40 / 255, 200 / 255]], dtype=np.float32), [40, 200]),  # 'F' in [0, 1]
    ],
)
def test_to_mode_scales_wide_integer_and_float_images(
    values: np.ndarray, expected: list[int]
) -> None:
    image = Image.fromarray(values)
    assert image.mode in ("I", "F")
    assert np.asarray(to_mode(image, "L")).ravel().tolist() == expected


def test_rgba_png_is_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    image = Image.new("RGBA", (30, 10), (255, 0, 0, 0))  # transparent red -> white
    image.paste(Image.new("RGBA", (10, 10), (0, 0, 255, 255)), (10, 0))  # opaque blue
    image.paste(Image.new("RGBA", (10, 10), (0, 0, 0, 128)), (20, 0))  # half black
    image.save(path)
    pixels = decode_photo(path, 30, False)
    np.testing.assert_allclose(pixels[:, 5, 4], WHITE, atol=1)
    np.testing.assert_allclose(pixels[:, 5, 15], BLUE, atol=1)
    np.testing.assert_allclose(pixels[:, 5, 25], [127, 127, 127], atol=1)


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_la_and_webp_alpha(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"alpha{suffix}"
    if suffix == ".png":
        mode, clear, solid = "LA", (0, 0), (50, 255)
    else:
        mode, clear, solid = "RGBA", (*RED, 0), (*BLUE, 255)
    image = halves(clear, solid, mode=mode)
    image.save(path, **({"lossless": True} if suffix == ".webp" else {}))
    assert Image.open(path).mode == mode
    pixels = decode_photo(path, 16, False)
    assert_halves(pixels, WHITE, (50, 50, 50) if mode == "LA" else BLUE)


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_transparency_is_composited_on_white(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"clear{suffix}"
    image = Image.new("P", (40, 20), 0)
    image.putpalette(list(RED) + list(BLUE) + [0, 0, 0] * 254)
    image.paste(1, (20, 0, 40, 20))
    image.save(path, transparency=0)  # red is the transparent colour
    assert "transparency" in Image.open(path).info
    assert_halves(decode_photo(path, 16, False), WHITE, BLUE)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_photo_comes_upright(tmp_path: Path, orientation: int) -> None:
    upright = Image.new("RGB", (60, 40), RED)  # red on top, blue below
    upright.paste(Image.new("RGB", (60, 20), BLUE), (0, 20))
    # Store it the way a camera would: the sensor's pixels plus "turn me" in EXIF.
    stored_as = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.jpg"
    upright.transpose(stored_as[orientation]).save(path, exif=exif, quality=95)
    stored = np.asarray(Image.open(path))
    assert not np.allclose(stored[:5].reshape(-1, 3).mean(axis=0), RED, atol=30)  # as stored

    pixels = decode_photo(path, 16, False)
    np.testing.assert_allclose(pixels[:, :4].reshape(3, -1).mean(axis=1), RED, atol=12)
    np.testing.assert_allclose(pixels[:, -4:].reshape(3, -1).mean(axis=1), BLUE, atol=12)


# unreadable files


def truncated_jpeg(path: Path) -> Path:
    Image.fromarray(photo_like(300, 400, 0)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "make",
    [
        truncated_jpeg,
        lambda path: path.write_bytes(b"") and path,
        lambda path: path.write_text("<html>not a photo</html>") and path,
    ],
    ids=["truncated", "zero-bytes", "text"],
)
def test_unreadable_files_raise_a_clear_error(tmp_path: Path, make) -> None:
    path = tmp_path / "broken.jpg"
    make(path)
    with pytest.raises(UnreadablePhotoError) as error:
        decode_photo(path, 32, False)
    message = str(error.value)
    assert message.startswith(f"{path}: can't decode this photo")
    assert "\n" not in message
    assert isinstance(error.value, DataError)  # the CLI maps it to exit code 2


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadablePhotoError, match=r"missing\.jpg"):
        decode_photo(tmp_path / "missing.jpg", 32, False)


@pytest.mark.parametrize("size", [0, -3, 2.5])
def test_bad_image_size(tmp_path: Path, size) -> None:
    path = tmp_path / "ok.png"
    halves(RED, BLUE).save(path)
    with pytest.raises(DataError, match="image_size"):
        decode_photo(path, size, False)
