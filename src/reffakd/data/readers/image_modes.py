"""Turn a Pillow image of any mode into the uint8 array a dataset stores.

:func:`to_uint8` returns (H, W) for grayscale sources and (H, W, 3) for colour ones; a folder
that mixes both becomes RGB by repeating the gray channel (``readers._stack``). Every mode
Pillow can open is either converted by the rule below or refused with a one-line
:class:`DataError` naming the file and its mode. Nothing is clipped or reinterpreted silently.

Grayscale results

- ``L``: as stored (1/2/4-bit gray PNG/TIFF arrive already spread over 0..255 by Pillow).
- ``1``: 0 -> 0, 1 -> 255.
- ``I;16``, ``I;16B``, ``I;16L``, ``I;16N`` (16-bit PNG, TIFF): scaled by the declared 16-bit
  range, ``u8 = round(v * 255 / 65535) = floor((v + 128) / 257)`` (exact, there are no ties),
  never by the image's own min/max, which would change images relative to each other. Data
  that uses only part of the range (12-bit camera values in a 16-bit file) therefore comes out
  dark, as the file declares it. A TIFF with other than 16 bits per sample (12-bit data that
  Pillow widens to ``I;16``) is refused.
- ``I`` (32-bit integer): Pillow uses it for 16-bit PGM/PPM, after rescaling their maxval to
  0..65535, and for TIFFs with 32-bit or signed samples. PGM/PPM values are scaled as 16-bit
  (a value outside 0..65535 is refused); ``I`` from any other format has no range that maps
  onto 0..255 and is refused.
- ``F`` (float TIFF, PFM): finite values in [0, 1] become ``floor(v * 255 + 0.5)``; any other
  value is refused, the message giving the observed range.
- ``LA``, ``La``: see alpha below.

Colour results

- ``RGB`` as stored; ``RGBX`` drops its padding byte.
- ``P`` and ``PA`` (palette): through the palette to RGB (palette images count as colour).
- ``CMYK``: Pillow's conversion, ``R = round((255 - C) (255 - K) / 255)`` (likewise G from M,
  B from Y); embedded ICC profiles are ignored. Pillow un-inverts Adobe CMYK JPEGs.
- ``YCbCr``: Pillow's JFIF (full-range BT.601) conversion, within one level of
  ``R = Y + 1.402 (Cr - 128)``, ``G = Y - 0.344136 (Cb - 128) - 0.714136 (Cr - 128)``,
  ``B = Y + 1.772 (Cb - 128)``. JPEGs (and JPEG-compressed TIFFs) already arrive as RGB. Pillow
  reads uncompressed YCbCr TIFF pixels as if unsubsampled and full-range, so such a TIFF is
  refused unless it declares 1x1 subsampling and full-range reference black/white.
- ``HSV``: Pillow's conversion (the same as :func:`colorsys.hsv_to_rgb`, rounded).
- 16 bits per channel colour (RGB, RGBA, CMYK, and gray+alpha PNGs, which Pillow opens as
  RGBA): Pillow keeps the high byte, ``floor(v / 256)``, within one level of the 16-bit rule
  above; accepted.
- ``LAB`` is refused: Pillow converts it through LittleCMS's 8-bit Lab pipeline with an assumed
  D50 white, which misses white by a level and saturated colours by several, and a CIELab TIFF
  may be relative to another white point.

Alpha is composited over black, ``u8 = round(c * a / 255)`` per channel (exact integer
arithmetic), i.e. premultiplied: the colour stored under a fully transparent pixel is
unspecified and must not reach training, and premultiplied storage (``La``, ``RGBa``) already
means "over black", so those keep their colour channels as they are. The alpha channel decides
nothing about grayscale vs colour: ``LA``/``La`` give gray, ``RGBA``/``RGBa``/``PA``/``P`` give
RGB. Colour-key transparency (a PNG/GIF ``transparency`` value in ``1``, ``L``, ``I;16`` or
``RGB`` images) counts as alpha 0 for the pixels equal to the key, which therefore become 0.
The key is compared in the file's own sample depth: for a 2/4-bit gray PNG it is spread like
the pixels; a 16-bit RGB PNG's key would have to be compared with the low bytes Pillow drops,
so that image is refused.

TIFFs with signed integer samples are refused (Pillow reads signed 8-bit samples as unsigned),
and so are 16-bit and float white-is-zero TIFFs (Pillow inverts only 1 to 8-bit ones).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
from PIL import Image

from reffakd.errors import DataError

_TIFF_BITS_PER_SAMPLE = 258
_TIFF_PHOTOMETRIC = 262
_TIFF_WHITE_IS_ZERO = 0
_TIFF_SAMPLE_FORMAT = 339
_TIFF_YCBCR_SUBSAMPLING = 530
_TIFF_REFERENCE_BLACK_WHITE = 532
_TIFF_SIGNED = 2
_FULL_RANGE_YCBCR = (0, 255, 128, 255, 128, 255)
_WIDE_GRAY = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_LOW_BIT_GRAY = re.compile(r"L;([124])$")
_SIXTEEN_BIT_COLOUR = re.compile(r"RGB;16")
_Key = int | tuple[int, ...] | None


def to_uint8(image: Image.Image, where: str) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 for ``image``, or :class:`DataError` naming ``where``.

    Pass the image as :func:`PIL.Image.open` returns it, before it is loaded: the stored sample
    depth that colour keys are compared in is read from its undecoded tiles.
    """
    _check_tiff(image, where)
    convert = _CONVERTERS.get(image.mode)
    if convert is None:
        raise _unsupported(where, image.mode)
    return convert(image, where)


def _unsupported(where: str, mode: str, why: str = "") -> DataError:
    detail = f" ({why})" if why else ""
    return DataError(
        f"{where}: image mode {mode}{detail} is not supported; "
        "convert it to 8-bit grayscale or RGB."
    )


def _as_tuple(value: object) -> tuple:
    return tuple(value) if isinstance(value, tuple | list) else (value,)


def _check_tiff(image: Image.Image, where: str) -> None:
    tags = getattr(image, "tag_v2", None)
    if image.format != "TIFF" or tags is None:
        return
    if _TIFF_SIGNED in _as_tuple(tags.get(_TIFF_SAMPLE_FORMAT, 1)):
        raise _unsupported(where, image.mode, "TIFF with signed integer samples")
    if image.mode in _WIDE_GRAY and tags.get(_TIFF_PHOTOMETRIC) == _TIFF_WHITE_IS_ZERO:
        raise _unsupported(where, image.mode, "white-is-zero TIFF, which Pillow does not invert")
    bits = set(_as_tuple(tags.get(_TIFF_BITS_PER_SAMPLE, 1)))
    if image.mode.startswith("I;16") and bits != {16}:
        raise _unsupported(where, image.mode, f"TIFF with {max(bits)}-bit samples")
    if image.mode == "YCbCr":
        subsampling = _as_tuple(tags.get(_TIFF_YCBCR_SUBSAMPLING, (2, 2)))
        reference = _as_tuple(tags.get(_TIFF_REFERENCE_BLACK_WHITE, _FULL_RANGE_YCBCR))
        if subsampling != (1, 1) or tuple(float(v) for v in reference) != _FULL_RANGE_YCBCR:
            raise _unsupported(where, "YCbCr", "TIFF with subsampled or limited-range chroma")


def _stored_rawmode(image: Image.Image) -> str:
    """How the file stores its samples (e.g. ``L;4``, ``RGB;16B``); "" once loaded or unknown."""
    args = image.tile[0].args if image.tile else None
    first = args[0] if isinstance(args, tuple) and args else args
    return first if isinstance(first, str) else ""


def _colour_key(image: Image.Image, where: str) -> _Key:
    """The transparent colour in the decoded pixels' scale, or None."""
    key = image.info.get("transparency")
    if key is None:
        return None
    rawmode = _stored_rawmode(image)
    if _SIXTEEN_BIT_COLOUR.match(rawmode):
        raise _unsupported(where, image.mode, "16-bit RGB with a transparent colour key")
    low_bits = _LOW_BIT_GRAY.match(rawmode)
    if low_bits and isinstance(key, int):
        return key * 255 // (2 ** int(low_bits.group(1)) - 1)
    return key


def _clear_key(array: np.ndarray, key: _Key) -> np.ndarray:
    """Colour-key transparency composited over black: pixels equal to ``key`` become 0."""
    if key is None:
        return array
    hit = array == np.asarray(key)
    if array.ndim == 3:
        hit = hit.all(axis=2, keepdims=True)
    return np.where(hit, 0, array).astype(array.dtype)


def _over_black(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """round(c * a / 255) exactly: c * a / 255 is never a half, so (c * a + 127) // 255."""
    product = color.astype(np.uint32) * alpha.astype(np.uint32)
    return ((product + 127) // 255).astype(np.uint8)


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    """round(v * 255 / 65535) = round(v / 257) exactly: (v + 128) // 257."""
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _from_plain(image: Image.Image, where: str) -> np.ndarray:
    key = _colour_key(image, where)
    return _clear_key(np.asarray(image, dtype=np.uint8), key)


def _from_bilevel(image: Image.Image, where: str) -> np.ndarray:
    key = _colour_key(image, where)  # Pillow already states a 1-bit key as 0 or 255
    return _clear_key(np.asarray(image.convert("L"), dtype=np.uint8), key)


def _from_16bit(image: Image.Image, where: str) -> np.ndarray:
    key = _colour_key(image, where)
    return _scale_16bit(_clear_key(np.asarray(image), key))


def _from_int32(image: Image.Image, where: str) -> np.ndarray:
    if image.format != "PPM":
        raise _unsupported(where, "I", f"32-bit or signed integer {image.format or 'image'}")
    values = np.asarray(image)
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 65535:
        raise _unsupported(where, "I", f"values {low}..{high} outside 0..65535")
    return _scale_16bit(values)


def _from_float(image: Image.Image, where: str) -> np.ndarray:
    values = np.asarray(image, dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(
            f"{where}: float image (mode F) holds NaN or infinite values; only finite values "
            "in [0, 1] can be read, fix or remove that file."
        )
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise DataError(
            f"{where}: float image (mode F) has values in [{low:g}, {high:g}]; only values in "
            "[0, 1] can be read, rescale it to [0, 1] or save it as 8-bit."
        )
    return np.floor(values * 255.0 + 0.5).astype(np.uint8)


def _from_gray_alpha(image: Image.Image, where: str) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.uint8)
    return _over_black(pixels[:, :, 0], pixels[:, :, 1])


def _from_colour_alpha(image: Image.Image, where: str) -> np.ndarray:
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    pixels = np.asarray(rgba, dtype=np.uint8)
    return _over_black(pixels[:, :, :3], pixels[:, :, 3:])


def _premultiplied(image: Image.Image, where: str) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.uint8)
    return np.ascontiguousarray(pixels[:, :, 0] if image.mode == "La" else pixels[:, :, :3])


def _via_rgb(image: Image.Image, where: str) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


_CONVERTERS: dict[str, Callable[[Image.Image, str], np.ndarray]] = {
    "1": _from_bilevel,
    "L": _from_plain,
    "RGB": _from_plain,
    "I;16": _from_16bit,
    "I;16B": _from_16bit,
    "I;16L": _from_16bit,
    "I;16N": _from_16bit,
    "I": _from_int32,
    "F": _from_float,
    "LA": _from_gray_alpha,
    "La": _premultiplied,
    "RGBa": _premultiplied,
    "RGBA": _from_colour_alpha,
    "P": _from_colour_alpha,  # an opaque palette gives alpha 255, i.e. the palette colours
    "PA": _from_colour_alpha,
    "RGBX": _via_rgb,
    "CMYK": _via_rgb,
    "YCbCr": _via_rgb,
    "HSV": _via_rgb,
}
