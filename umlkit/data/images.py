"""Reading image and mask files: every Pillow mode the loaders accept, and a clear refusal of the rest.

Image files come in many *modes* (Pillow's name for how pixels are stored): 8-bit colour or grey,
palettes, 16-bit medical greys, 32-bit integers and floats. A model wants one thing, float32 in
[0, 1], so every image umlkit reads goes through one table of rules (:func:`decode_image`), and a
mode or a range it cannot scale safely is refused with an error naming the file, never guessed.

Masks are read as the values they store (:func:`decode_mask`), then checked against the values a
dataset expects and mapped to class indices (:func:`map_mask_values`): a mask of the wrong size
or with an unexpected value names its file and what it found. :func:`read_image` and
:func:`read_mask` open a file and do both steps; their errors are the dataset errors of
:mod:`umlkit.data.base` (:class:`~umlkit.data.base.DatasetItemError`,
:class:`~umlkit.data.base.MissingFileError`), so ``on_error="skip"`` can list the bad files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from umlkit.data.base import DatasetItemError, MissingFileError

#: Pillow modes of 8-bit data that Pillow converts to RGB or L (see :func:`decode_image`).
EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")
#: Pillow modes of unsigned 16-bit single-channel data (byte orders: native, little, big).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
#: Every Pillow mode :func:`decode_image` accepts.
IMAGE_MODES = EIGHT_BIT_MODES + SIXTEEN_BIT_MODES + ("I", "F")
#: Pillow modes :func:`decode_mask` accepts: 8-bit ones (read through Pillow's grey conversion)
#: and wide integer ones (read as stored).
MASK_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX") + SIXTEEN_BIT_MODES + ("I",)


def decode_image(image: Image.Image, path: str | Path, grayscale: bool = False) -> np.ndarray:
    """Turn an opened image into float32 ``(H, W, 3)`` in [0, 1], or ``(H, W, 1)`` with ``grayscale``.

    Every image umlkit reads from a file goes through here. The rule per Pillow mode:

    ================================  ==========================================================
    mode                              decoded as
    ================================  ==========================================================
    ``RGB``                           each channel / 255
    ``L`` (8-bit grey)                value / 255, repeated into three channels
    ``1`` (bilevel)                   0 -> 0.0, 1 -> 1.0
    ``P``, ``PA`` (palette)           each index looked up in the palette, then as ``RGB``; the
                                      palette's transparency and ``PA``'s alpha are ignored
    ``RGBA``, ``LA``, ``RGBX``        the alpha (or padding) channel is dropped and the colour
                                      values are used as stored, not composited on a
                                      background: a transparent pixel keeps the colour the
                                      file stores under it
    ``CMYK``                          Pillow's CMYK -> RGB conversion (no ICC colour
                                      management), then as ``RGB``
    ``YCbCr``                         Pillow's YCbCr -> RGB conversion (JPEG's), then as ``RGB``
    ``I;16`` (``I;16L``, ``I;16B``,   unsigned 16-bit grey: value / 65535
    ``I;16N``)
    ``I`` (32-bit signed integer)     value / 65535 when every value lies in [0, 65535], as
                                      16-bit data (the mode some formats and older Pillow
                                      versions give 16-bit files); any other range is refused,
                                      since no maximum is known to scale by
    ``F`` (32-bit float)              used as stored; every value must already lie in [0, 1]
                                      (NaN and inf included in the refusal)
    any other (``LAB``, ``HSV``,      refused, naming the file and the mode
    ``RGBa``, ...)
    ================================  ==========================================================

    With ``grayscale=True`` the 8-bit modes are converted by Pillow to ``L`` (luma
    ``(299 R + 587 G + 114 B) / 1000`` rounded to 8 bits for colour images) and divided by 255;
    the single-channel wide modes keep their one channel. Without it, single-channel images
    are repeated into three equal channels. 16-bit-per-channel colour files (48-bit RGB PNGs)
    reach Pillow's ``RGB``/``RGBA`` modes with their high byte only: the scale is right, the
    precision is 8 bits. 8-bit images decode exactly as ``x / 255`` in float32.

    Args:
        image: an opened Pillow image.
        path: its file, named in error messages.
        grayscale: return one grey channel instead of three.

    Raises:
        DatasetItemError: a mode not in the table, an ``I`` image outside [0, 65535], or an
            ``F`` image outside [0, 1]; the message names the file, the mode and the range.
    """
    mode = image.mode
    if mode not in IMAGE_MODES:
        raise DatasetItemError(
            path, f"image mode {mode!r} is not supported (supported: {', '.join(IMAGE_MODES)})"
        )
    if mode in EIGHT_BIT_MODES:
        array = np.asarray(image.convert("L" if grayscale else "RGB"), dtype=np.float32)
        array = array / np.float32(255)
    else:
        array = np.asarray(image)
        if array.size == 0:
            raise DatasetItemError(path, f"image (mode {mode!r}) holds no pixels")
        if mode in SIXTEEN_BIT_MODES:
            array = array.astype(np.float32) / np.float32(65535)
        elif mode == "I":
            low, high = int(array.min()), int(array.max())
            if low < 0 or high > 65535:
                raise DatasetItemError(
                    path,
                    f"image mode 'I' (32-bit integer) holds values in [{low}, {high}]; only "
                    "[0, 65535] is read (as 16-bit data, / 65535); rescale the image",
                )
            array = array.astype(np.float32) / np.float32(65535)
        else:  # "F"
            low, high = float(np.min(array)), float(np.max(array))
            if not (np.isfinite(array).all() and low >= 0.0 and high <= 1.0):
                raise DatasetItemError(
                    path,
                    f"image mode 'F' (32-bit float) holds values in [{low:.6g}, {high:.6g}] "
                    f"({int((~np.isfinite(array)).sum())} not finite); float images must lie "
                    "in [0, 1]",
                )
            array = array.astype(np.float32)
        array = array[..., None] if grayscale else np.repeat(array[..., None], 3, axis=2)
    return array[..., None] if array.ndim == 2 else array


def read_image(path: Path, grayscale: bool = False) -> np.ndarray:
    """Read an image file as float32 ``(H, W, 3)`` in [0, 1] (``(H, W, 1)`` with ``grayscale``).

    The decoding rule per image mode is :func:`decode_image`'s.

    Raises:
        MissingFileError: the file does not exist.
        DatasetItemError: the file cannot be decoded as an image, or its mode or range is
            refused by :func:`decode_image`.
    """
    if not path.is_file():
        raise MissingFileError(path, "image file not found")
    try:
        with Image.open(path) as handle:
            return decode_image(handle, path, grayscale)
    except DatasetItemError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DatasetItemError(path, f"cannot read the image ({error})") from error


def decode_mask(image: Image.Image, path: str | Path) -> np.ndarray:
    """The stored values of an opened mask image as a 2-D integer array.

    8-bit modes (``1``, ``L``, ``P``, ``LA``, ``PA``, ``RGB``, ``RGBA``, ``RGBX``) go through
    Pillow's conversion to ``L``: grey values as stored (``1`` gives 0 / 255, a palette is looked
    up, a colour's luma is taken, alpha is dropped). 16-bit (``I;16`` and its byte orders) and
    32-bit (``I``) integer masks are read as stored, without rescaling: class indices 0, 1, 2 or
    grey values 0 / 128 / 255 work, a 16-bit mask stored as 0 / 65535 is refused later by the
    value check, naming the values it holds.

    Raises:
        DatasetItemError: a float (``F``) or any other mode; the message names the file and mode.
    """
    mode = image.mode
    if mode not in MASK_MODES:
        raise DatasetItemError(
            path,
            f"mask mode {mode!r} is not supported; store masks as 8- or 16-bit integer images "
            f"(supported: {', '.join(MASK_MODES)})",
        )
    if mode in SIXTEEN_BIT_MODES or mode == "I":
        return np.asarray(image).astype(np.int64)
    return np.asarray(image.convert("L"))


def read_mask(path: Path, values: dict[int, int], image_shape: tuple[int, int]) -> np.ndarray:
    """Decode a mask, check its size and values, and map the stored values to class indices.

    Args:
        path: the mask file (any format Pillow reads; decoded by :func:`decode_mask`).
        values: stored value -> class index, e.g. ``{0: 0, 255: 1}``.
        image_shape: (H, W) of the image the mask belongs to.

    Raises:
        MissingFileError: the file does not exist.
        DatasetItemError: unreadable, an unsupported mode, a size other than ``image_shape``,
            or unexpected values.
    """
    if not path.is_file():
        raise MissingFileError(path, "mask file not found")
    try:
        with Image.open(path) as handle:
            mode = handle.mode
            stored = decode_mask(handle, path)
    except DatasetItemError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DatasetItemError(path, f"cannot read the mask ({error})") from error
    try:
        return map_mask_values(stored, values, image_shape, path)
    except DatasetItemError as error:
        if mode not in SIXTEEN_BIT_MODES + ("I",):
            raise
        note = f" (a mode {mode!r} mask is read as stored, not rescaled to 8 bits)"
        raise DatasetItemError(path, error.problem + note) from error


def map_mask_values(
    stored: np.ndarray, values: dict[int, int], image_shape: tuple[int, int], path: str | Path
) -> np.ndarray:
    """Check a decoded mask's shape and values; return its class indices as int64."""
    if stored.shape != tuple(image_shape):
        raise DatasetItemError(
            path,
            f"mask is {stored.shape[1]}x{stored.shape[0]} (WxH) but its image is "
            f"{image_shape[1]}x{image_shape[0]}",
        )
    found = np.unique(stored)
    unexpected = sorted(set(found.tolist()) - set(values))
    if unexpected:
        raise DatasetItemError(
            path,
            f"mask holds the value(s) {unexpected[:8]}, expected only {sorted(values)}",
        )
    lookup = np.zeros(max(values) + 1, dtype=np.int64)
    for stored_value, cls in values.items():
        lookup[stored_value] = cls
    return lookup[stored]
