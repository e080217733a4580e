"""umlkit.data.images: decoding every image mode the loaders accept, and refusing the others.

Each test writes its files with Pillow (and numpy) and checks the decoded values exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from umlkit.data.base import DatasetItemError
from umlkit.data.images import IMAGE_MODES, decode_image, read_image, read_mask


def save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def as_float(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def three(grey: np.ndarray) -> np.ndarray:
    """A single-channel (H, W) array as the (H, W, 3) image of three equal channels."""
    return np.repeat(grey[..., None], 3, axis=2)


# ------------------------------------------------------------------------------------- 8-bit modes
def test_rgb_decodes_exactly_as_x_over_255(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    pixels[0, :3] = [[0, 0, 0], [255, 255, 255], [1, 128, 254]]
    image = read_image(save(Image.fromarray(pixels), tmp_path / "rgb.png"))
    assert image.dtype == np.float32 and image.shape == (5, 7, 3)
    assert np.array_equal(image, pixels.astype(np.float32) / np.float32(255))
    assert image[0, 1].tolist() == [1.0, 1.0, 1.0] and image[0, 0].tolist() == [0.0, 0.0, 0.0]


def test_grey_l_is_repeated_or_kept_as_one_channel(tmp_path):
    grey = np.array([[0, 1, 128, 255]], dtype=np.uint8)
    path = save(Image.fromarray(grey), tmp_path / "grey.png")
    expected = grey.astype(np.float32) / np.float32(255)
    assert np.array_equal(read_image(path), three(expected))
    single = read_image(path, grayscale=True)
    assert single.shape == (1, 4, 1) and np.array_equal(single[..., 0], expected)


def test_rgb_with_grayscale_is_pillow_luma(tmp_path):
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [40, 40, 40]]], dtype=np.uint8)
    grey = read_image(save(Image.fromarray(pixels), tmp_path / "rgb.png"), grayscale=True)
    # luma 0.299 R + 0.587 G + 0.114 B, rounded: 76.2 -> 76, 149.7 -> 150, 29.1 -> 29, 40
    assert np.array_equal(grey[0, :, 0], as_float([76, 150, 29, 40]) / np.float32(255))


def test_bilevel_is_zero_and_one(tmp_path):
    path = save(Image.fromarray(np.array([[True, False, True]])), tmp_path / "bilevel.png")
    with Image.open(path) as handle:
        assert handle.mode == "1"
    assert np.array_equal(read_image(path), three(as_float([[1, 0, 1]])))
    assert np.array_equal(read_image(path, grayscale=True)[..., 0], as_float([[1, 0, 1]]))


def test_palette_goes_through_its_palette(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 128, 255, 7, 7, 7])
    for x in range(3):
        image.putpixel((x, 0), x)
    image.info["transparency"] = 0  # ignored
    path = save(image, tmp_path / "palette.png")
    colours = as_float([[[255, 0, 0], [0, 128, 255], [7, 7, 7]]]) / np.float32(255)
    assert np.array_equal(read_image(path), colours)
    # luma: red 76.2 -> 76; (0, 128, 255): 75.1 + 29.1 = 104.2 -> 104; grey 7 stays 7
    grey = read_image(path, grayscale=True)[0, :, 0]
    assert np.array_equal(grey, as_float([76, 104, 7]) / np.float32(255))


def test_palette_with_alpha_drops_the_alpha():
    image = Image.new("PA", (2, 1))
    image.putpalette([10, 200, 30, 90, 90, 90])
    image.putpixel((0, 0), (0, 0))  # palette index 0, fully transparent
    image.putpixel((1, 0), (1, 255))
    decoded = decode_image(image, "pa-in-memory")
    assert np.array_equal(decoded, as_float([[[10, 200, 30], [90, 90, 90]]]) / np.float32(255))


def test_rgba_and_la_drop_the_alpha_without_compositing(tmp_path):
    rgba = np.array([[[10, 20, 30, 0], [200, 100, 50, 255], [1, 2, 3, 128]]], dtype=np.uint8)
    path = save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "rgba.png")
    assert np.array_equal(read_image(path), rgba[..., :3].astype(np.float32) / np.float32(255))
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (100, 0))
    la.putpixel((1, 0), (250, 255))
    path = save(la, tmp_path / "la.png")
    expected = as_float([[100, 250]]) / np.float32(255)
    assert np.array_equal(read_image(path), three(expected))
    assert np.array_equal(read_image(path, grayscale=True)[..., 0], expected)


def test_cmyk_is_converted_to_rgb(tmp_path):
    image = Image.new("CMYK", (4, 1))
    inks = [(0, 255, 255, 0), (255, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 255)]
    for x, ink in enumerate(inks):
        image.putpixel((x, 0), ink)
    decoded = read_image(save(image, tmp_path / "cmyk.tif"))
    # magenta + yellow = red, cyan, no ink = white, black ink = black
    assert decoded.tolist() == [[[1, 0, 0], [0, 1, 1], [1, 1, 1], [0, 0, 0]]]


def test_ycbcr_is_converted_to_rgb(tmp_path):
    image = Image.new("YCbCr", (2, 1))
    image.putpixel((0, 0), (0, 128, 128))  # black
    image.putpixel((1, 0), (255, 128, 128))  # white
    path = save(image, tmp_path / "ycbcr.tif")
    with Image.open(path) as handle:
        assert handle.mode == "YCbCr"
    assert read_image(path).tolist() == [[[0, 0, 0], [1, 1, 1]]]
    assert read_image(path, grayscale=True)[..., 0].tolist() == [[0, 1]]


# -------------------------------------------------------------------------------------- wide modes
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_divides_by_65535(tmp_path, suffix):
    stored = np.array([[0, 1, 32768, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(stored), tmp_path / f"grey16{suffix}")
    with Image.open(path) as handle:
        assert handle.mode == "I;16"
    expected = as_float([0, 1, 32768, 65535]) / np.float32(65535)
    decoded = read_image(path)
    assert decoded.shape == (1, 4, 3) and decoded.dtype == np.float32
    assert np.array_equal(decoded, three(expected[None]))
    assert decoded[0, 3, 0] == 1.0 and decoded[0, 2, 0] == pytest.approx(32768 / 65535, rel=1e-7)
    assert np.array_equal(read_image(path, grayscale=True)[0, :, 0], expected)


def test_big_endian_sixteen_bit_tiff(tmp_path):
    stored = np.array([[0, 258, 65535]], dtype=">u2")
    image = Image.frombytes("I;16B", (3, 1), stored.tobytes())
    path = save(image, tmp_path / "grey16b.tif")
    with Image.open(path) as handle:
        assert handle.mode == "I;16B"
    expected = as_float([0, 258, 65535]) / np.float32(65535)
    assert np.array_equal(read_image(path, grayscale=True)[0, :, 0], expected)


def test_int32_within_sixteen_bits_divides_by_65535(tmp_path):
    stored = np.array([[0, 70, 65535]], dtype=np.int32)
    path = save(Image.fromarray(stored), tmp_path / "int32.tif")
    with Image.open(path) as handle:
        assert handle.mode == "I"
    expected = as_float([0, 70, 65535]) / np.float32(65535)
    assert np.array_equal(read_image(path), three(expected[None]))


@pytest.mark.parametrize("values", [[0, 70000], [-1, 5]])
def test_int32_outside_sixteen_bits_is_refused(tmp_path, values):
    path = save(Image.fromarray(np.array([values], dtype=np.int32)), tmp_path / "wide.tif")
    message = rf"wide\.tif: image mode 'I' .* values in \[{values[0]}, {values[1]}\]"
    with pytest.raises(DatasetItemError, match=message):
        read_image(path)


def test_float_in_the_unit_interval_is_used_as_stored(tmp_path):
    stored = np.array([[0.0, 0.25, 1 / 3, 1.0]], dtype=np.float32)
    path = save(Image.fromarray(stored), tmp_path / "float.tif")
    with Image.open(path) as handle:
        assert handle.mode == "F"
    assert np.array_equal(read_image(path), three(stored))
    assert np.array_equal(read_image(path, grayscale=True)[..., 0], stored)


@pytest.mark.parametrize(
    ("values", "shown"),
    [([-0.5, 0.5], r"\[-0\.5, 0\.5\]"), ([0.0, 2.0], r"\[0, 2\]"), ([0.0, np.nan], "1 not finite")],
)
def test_float_outside_the_unit_interval_is_refused(tmp_path, values, shown):
    stored = np.array([values], dtype=np.float32)
    path = save(Image.fromarray(stored), tmp_path / "float.tif")
    with pytest.raises(DatasetItemError, match=rf"float\.tif: image mode 'F' .*{shown}"):
        read_image(path)
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        read_image(path, grayscale=True)


def test_unsupported_mode_is_refused_by_name(tmp_path):
    path = save(Image.new("LAB", (2, 2)), tmp_path / "lab.tif")
    with pytest.raises(DatasetItemError, match=r"lab\.tif: image mode 'LAB' is not supported"):
        read_image(path)
    assert "LAB" not in IMAGE_MODES


def test_unreadable_file_names_the_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image")
    with pytest.raises(DatasetItemError, match=r"broken\.png: cannot read the image"):
        read_image(path)


# ------------------------------------------------------------------------------------------- masks
def test_eight_bit_masks_map_their_grey_values(tmp_path):
    stored = np.array([[255, 128, 0]], dtype=np.uint8)
    path = save(Image.fromarray(stored), tmp_path / "refuge.bmp")
    assert read_mask(path, {255: 0, 128: 1, 0: 2}, (1, 3)).tolist() == [[0, 1, 2]]


def test_sixteen_bit_masks_are_read_as_stored(tmp_path):
    classes = np.array([[0, 1, 2, 1]], dtype=np.uint16)
    path = save(Image.fromarray(classes), tmp_path / "classes16.png")
    assert read_mask(path, {0: 0, 1: 1, 2: 2}, (1, 4)).tolist() == [[0, 1, 2, 1]]
    refuge = np.array([[255, 128, 0]], dtype=np.uint16)
    path = save(Image.fromarray(refuge), tmp_path / "refuge16.png")
    assert read_mask(path, {255: 0, 128: 1, 0: 2}, (1, 3)).tolist() == [[0, 1, 2]]


def test_sixteen_bit_mask_of_full_range_values_is_refused(tmp_path):
    stored = np.array([[0, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(stored), tmp_path / "isic16.png")
    message = (
        r"isic16\.png: mask holds the value\(s\) \[65535\], expected only \[0, 255\] "
        r"\(a mode 'I;16' mask is read as stored, not rescaled to 8 bits\)"
    )
    with pytest.raises(DatasetItemError, match=message):
        read_mask(path, {0: 0, 255: 1}, (1, 2))


def test_float_mask_is_refused_by_name(tmp_path):
    path = save(Image.fromarray(np.array([[0.0, 1.0]], dtype=np.float32)), tmp_path / "mask.tif")
    with pytest.raises(DatasetItemError, match=r"mask\.tif: mask mode 'F' is not supported"):
        read_mask(path, {0: 0, 1: 1}, (1, 2))
