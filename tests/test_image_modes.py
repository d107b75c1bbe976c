"""Every image mode Pillow opens is converted exactly to uint8 or refused on one line.

Files are written in the real formats and decoded through the folder readers; expected pixels
are worked out by hand (or by a naive formula) from the values written.
"""

from __future__ import annotations

import colorsys
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from reffakd.data.readers import decode_cache, read_image_folder, read_split_folders
from reffakd.data.readers import images as images_module
from reffakd.data.readers.image_modes import to_uint8
from reffakd.errors import DataError


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFFAKD_CACHE", str(tmp_path / "user-cache"))


def read_one(tmp_path: Path, name: str, write: Callable[[Path], object], mode: str) -> np.ndarray:
    """Write one image into a class folder, check Pillow opens it in ``mode``, read the folder.

    Returns (H, W) if the folder was read as grayscale, (H, W, 3) if as RGB.
    """
    path = tmp_path / "imgs" / "a" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    with Image.open(path) as img:
        assert img.mode == mode  # the file really exercises the mode under test
    images = read_image_folder(tmp_path / "imgs", cache_dir=tmp_path / "cache").images.numpy()
    return images[0, 0] if images.shape[1] == 1 else images[0].transpose(1, 2, 0)


def refusal(tmp_path: Path, name: str, write: Callable[[Path], object]) -> str:
    path = tmp_path / "imgs" / "a" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    with pytest.raises(DataError) as err:
        read_image_folder(tmp_path / "imgs", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert "\n" not in message and name in message
    return message


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, rows: list[bytes],
              chunks: dict[bytes, bytes] | None = None) -> bytes:  # fmt: skip
    """A minimal PNG (filter 0 rows) for bit depths Pillow does not write."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    extra = b"".join(chunk(kind, data) for kind, data in (chunks or {}).items())
    idat = zlib.compress(b"".join(b"\0" + row for row in rows))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + extra
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def set_tiff_tag(path: Path, tag: int, old: int, new: int) -> None:
    """Rewrite one SHORT tag of a TIFF Pillow wrote, to declare what Pillow cannot write."""
    data = path.read_bytes()
    entry = struct.pack("<HHIH", tag, 3, 1, old)  # tag, type SHORT, count 1, value
    assert data.count(entry) == 1
    path.write_bytes(data.replace(entry, struct.pack("<HHIH", tag, 3, 1, new)))


# ---------------------------------------------------------------------------------------------
# High bit depth integers


RAMP_16 = np.arange(65536, dtype=np.uint16).reshape(256, 256)
RAMP_16_EXPECTED = np.array([round(v * 255 / 65535) for v in range(65536)]).reshape(256, 256)


@pytest.mark.parametrize(
    ("name", "dtype", "mode"),
    [("ramp.png", "<u2", "I;16"), ("ramp.tif", "<u2", "I;16"), ("ramp.tif", ">u2", "I;16B")],
)
def test_16bit_ramp_scaled_by_declared_range(
    tmp_path: Path, name: str, dtype: str, mode: str
) -> None:
    def write(path: Path) -> None:
        Image.fromarray(RAMP_16.astype(dtype)).save(path)

    got = read_one(tmp_path, name, write, mode)
    assert got.shape == (256, 256)
    assert np.array_equal(got, RAMP_16_EXPECTED)


def test_16bit_little_endian_mode_reads_the_same(tmp_path: Path) -> None:
    image = Image.frombytes("I;16L", (4, 1), np.array([0, 257, 32896, 65535], "<u2").tobytes())
    assert to_uint8(image, "x.tif").tolist() == [[0, 1, 128, 255]]


def test_mid_range_16bit_is_not_saturated(tmp_path: Path) -> None:
    """The reported bug: I;16 -> L clipped everything above 255 to 255."""
    values = np.linspace(30000, 35000, 64).astype(np.uint16).reshape(8, 8)
    got = read_one(tmp_path, "mid.png", lambda p: Image.fromarray(values).save(p), "I;16")
    expected = np.array([[round(int(v) * 255 / 65535) for v in row] for row in values])
    assert np.array_equal(got, expected)
    assert got.min() == 117 and got.max() == 136


def test_16bit_split_folders_keep_images_relative(tmp_path: Path) -> None:
    """Scaling is by 65535, not per image: a dim image stays dim next to a bright one."""
    for split, value in (("train", 1000), ("test", 60000)):
        for cls in ("x", "y"):
            path = tmp_path / "src" / split / cls / "0.png"
            path.parent.mkdir(parents=True)
            Image.fromarray(np.full((3, 3), value, np.uint16)).save(path)
    data = read_split_folders(tmp_path / "src", "toy", cache_dir=tmp_path / "cache")
    assert data.train.images.shape == (2, 1, 3, 3)
    assert set(data.train.images.flatten().tolist()) == {4}  # round(1000 / 257) = round(3.89)
    assert set(data.test.images.flatten().tolist()) == {233}  # round(60000 / 257) = round(233.46)


def test_16bit_pgm_mode_i(tmp_path: Path) -> None:
    values = [0, 128, 129, 32768, 65406, 65535]

    def write(path: Path) -> None:
        path.write_bytes(b"P5\n6 1\n65535\n" + struct.pack(">6H", *values))

    got = read_one(tmp_path, "deep.pgm", write, "I")
    # round(v / 257): v / 257 = 0.498, 0.502, 127.502, 254.498
    assert got.tolist() == [[0, 0, 1, 128, 254, 255]]


def test_12bit_pgm_uses_its_maxval(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        path.write_bytes(b"P5\n3 1\n4095\n" + struct.pack(">3H", 0, 2048, 4095))

    got = read_one(tmp_path, "twelve.pgm", write, "I")
    assert got.tolist() == [[0, 128, 255]]  # 2048 * 255 / 4095 = 127.53


def test_int32_tiff_refused(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        Image.fromarray(np.array([[0, 70000]], np.int32)).save(path)

    message = refusal(tmp_path, "wide.tif", write)
    assert "image mode I " in message and "convert it to 8-bit grayscale or RGB" in message


def test_12bit_tiff_refused(tmp_path: Path) -> None:
    """Pillow widens 12-bit TIFF samples into I;16; 0..4095 is not the 16-bit range."""

    def write(path: Path) -> None:
        Image.fromarray(np.array([[1, 4095]], np.uint16)).save(path)
        set_tiff_tag(path, 258, 16, 12)  # BitsPerSample

    message = refusal(tmp_path, "twelve.tif", write)
    assert "image mode I;16 (TIFF with 12-bit samples) is not supported" in message


def test_white_is_zero_16bit_tiff_refused(tmp_path: Path) -> None:
    """Pillow inverts 8-bit white-is-zero TIFFs but would read 16-bit ones as black-is-zero."""

    def write(path: Path) -> None:
        Image.fromarray(np.array([[1, 4095]], np.uint16)).save(path)
        set_tiff_tag(path, 262, 1, 0)  # PhotometricInterpretation: BlackIsZero -> WhiteIsZero

    message = refusal(tmp_path, "inverted.tif", write)
    assert "image mode I;16 (white-is-zero TIFF, which Pillow does not invert)" in message


def test_white_is_zero_8bit_tiff_is_inverted(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        Image.fromarray(np.array([[0, 10, 255]], np.uint8)).save(path)
        set_tiff_tag(path, 262, 1, 0)

    assert read_one(tmp_path, "inverted.tif", write, "L").tolist() == [[255, 245, 0]]


def test_signed_8bit_tiff_refused(tmp_path: Path) -> None:
    """Pillow would read -1 as 255."""

    def write(path: Path) -> None:
        info = TiffImagePlugin.ImageFileDirectory_v2()
        info[339] = 2  # SampleFormat: signed integer
        info.tagtype[339] = 3
        Image.fromarray(np.array([[1, 255]], np.uint8)).save(path, tiffinfo=info)

    message = refusal(tmp_path, "signed.tif", write)
    assert "image mode L (TIFF with signed integer samples)" in message


# ---------------------------------------------------------------------------------------------
# Float


def test_float_tiff_in_unit_range(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.25, 0.5, 1.0, 1 / 255, 0.998]], np.float32)
    got = read_one(tmp_path, "unit.tif", lambda p: Image.fromarray(values).save(p), "F")
    # 63.75 -> 64, 127.5 -> 128 (half up), 254.49 -> 254
    assert got.tolist() == [[0, 64, 128, 255, 1, 254]]


def test_float_tiff_out_of_range_refused(tmp_path: Path) -> None:
    values = np.array([[0.0, 1.5], [-0.25, 0.5]], np.float32)
    message = refusal(tmp_path, "hdr.tif", lambda p: Image.fromarray(values).save(p))
    assert "mode F" in message and "[-0.25, 1.5]" in message


def test_float_tiff_nan_refused(tmp_path: Path) -> None:
    values = np.array([[0.0, np.nan]], np.float32)
    message = refusal(tmp_path, "nan.tif", lambda p: Image.fromarray(values).save(p))
    assert "mode F" in message and "NaN" in message


# ---------------------------------------------------------------------------------------------
# Bilevel and colour keys


def test_1bit_png(tmp_path: Path) -> None:
    bits = np.array([[1, 0, 1], [0, 0, 1]], bool)
    got = read_one(tmp_path, "bits.png", lambda p: Image.fromarray(bits).save(p), "1")
    assert got.tolist() == [[255, 0, 255], [0, 0, 255]]


def test_gray_png_colour_key_becomes_black(tmp_path: Path) -> None:
    gray = np.array([[5, 7, 200]], np.uint8)

    def write(path: Path) -> None:
        Image.fromarray(gray).save(path, transparency=7)

    assert read_one(tmp_path, "key.png", write, "L").tolist() == [[5, 0, 200]]


def test_4bit_gray_png_colour_key_in_file_depth(tmp_path: Path) -> None:
    """Pixels 0..15 arrive as 0..255 (x17); the tRNS key 3 must hit the pixel 3 (51)."""
    row = bytes([0x01, 0x23])  # four 4-bit pixels 0, 1, 2, 3

    def write(path: Path) -> None:
        path.write_bytes(png_bytes(4, 1, 4, 0, [row], {b"tRNS": struct.pack(">H", 3)}))

    assert read_one(tmp_path, "nibbles.png", write, "L").tolist() == [[0, 17, 34, 0]]


def test_16bit_gray_png_colour_key(tmp_path: Path) -> None:
    values = np.array([[4660, 32768, 65535]], np.uint16)

    def write(path: Path) -> None:
        Image.fromarray(values).save(path, transparency=32768)

    # 4660 / 257 = 18.13
    assert read_one(tmp_path, "key16.png", write, "I;16").tolist() == [[18, 0, 255]]


def test_rgb_png_colour_key(tmp_path: Path) -> None:
    rgb = np.array([[[1, 2, 3], [4, 5, 6], [4, 5, 7]]], np.uint8)

    def write(path: Path) -> None:
        Image.fromarray(rgb).save(path, transparency=(4, 5, 6))

    got = read_one(tmp_path, "keyrgb.png", write, "RGB")
    assert got.tolist() == [[[1, 2, 3], [0, 0, 0], [4, 5, 7]]]


def test_16bit_rgb_png_colour_key_refused(tmp_path: Path) -> None:
    row = struct.pack(">6H", 0x1234, 0xFFFF, 0x0080, 0x00FF, 0, 0)

    def write(path: Path) -> None:
        key = struct.pack(">3H", 0, 0, 0)
        path.write_bytes(png_bytes(2, 1, 16, 2, [row], {b"tRNS": key}))

    message = refusal(tmp_path, "deepkey.png", write)
    assert "image mode RGB (16-bit RGB with a transparent colour key)" in message


def test_16bit_rgb_png_keeps_high_byte(tmp_path: Path) -> None:
    row = struct.pack(">6H", 0x1234, 0xFFFF, 0x0080, 0x00FF, 0x8000, 0)

    def write(path: Path) -> None:
        path.write_bytes(png_bytes(2, 1, 16, 2, [row]))

    got = read_one(tmp_path, "deep.png", write, "RGB")
    assert got.tolist() == [[[0x12, 0xFF, 0x00], [0x00, 0x80, 0x00]]]


# ---------------------------------------------------------------------------------------------
# Alpha: composited over black, round(c * a / 255)


def test_rgba_png_over_black(tmp_path: Path) -> None:
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 128], [90, 91, 92, 0]]], np.uint8)
    got = read_one(tmp_path, "rgba.png", lambda p: Image.fromarray(rgba).save(p), "RGBA")
    # 200 * 128 / 255 = 100.39, 100 * 128 / 255 = 50.20, 50 * 128 / 255 = 25.10
    assert got.tolist() == [[[200, 100, 50], [100, 50, 25], [0, 0, 0]]]


def test_la_png_stays_gray_over_black(tmp_path: Path) -> None:
    la = np.array([[[200, 255], [200, 128], [77, 0], [255, 1]]], np.uint8)
    got = read_one(tmp_path, "la.png", lambda p: Image.fromarray(la, "LA").save(p), "LA")
    assert got.tolist() == [[200, 100, 0, 1]]  # 255 * 1 / 255 = 1


def test_la_next_to_rgb_becomes_rgb(tmp_path: Path) -> None:
    """Alpha does not change the grayscale/colour decision: mixed folders become RGB."""
    (tmp_path / "imgs" / "b").mkdir(parents=True)
    Image.fromarray(np.full((1, 2, 3), 9, np.uint8)).save(tmp_path / "imgs" / "b" / "rgb.png")
    la = np.array([[[200, 128], [60, 255]]], np.uint8)
    got = read_one(tmp_path, "la.png", lambda p: Image.fromarray(la, "LA").save(p), "LA")
    assert got.tolist() == [[[100, 100, 100], [60, 60, 60]]]


def palette_image(indices: list[int]) -> Image.Image:
    image = Image.fromarray(np.array([indices], np.uint8), "P")
    image.putpalette([10, 20, 30, 200, 100, 50, 90, 91, 92])
    return image


def test_palette_png_with_alpha_table(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        palette_image([0, 1, 2]).save(path, transparency=bytes([255, 128, 0]))

    got = read_one(tmp_path, "pal.png", write, "P")
    assert got.tolist() == [[[10, 20, 30], [100, 50, 25], [0, 0, 0]]]


def test_palette_png_with_transparent_index(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        palette_image([0, 1, 2]).save(path, transparency=1)

    got = read_one(tmp_path, "palkey.png", write, "P")
    assert got.tolist() == [[[10, 20, 30], [0, 0, 0], [90, 91, 92]]]


def test_opaque_palette_gif(tmp_path: Path) -> None:
    got = read_one(tmp_path, "pal.gif", lambda p: palette_image([2, 0]).save(p), "P")
    assert got.tolist() == [[[90, 91, 92], [10, 20, 30]]]


def test_palette_alpha_tiff(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        image = Image.new("PA", (3, 1))
        image.putpalette([10, 20, 30, 200, 100, 50])
        for x, pixel in enumerate([(0, 255), (1, 128), (1, 0)]):
            image.putpixel((x, 0), pixel)
        image.save(path)

    got = read_one(tmp_path, "pa.tif", write, "PA")
    assert got.tolist() == [[[10, 20, 30], [100, 50, 25], [0, 0, 0]]]


def test_premultiplied_modes_keep_their_colour() -> None:
    la = Image.frombytes("La", (2, 1), bytes([100, 128, 0, 0]))
    assert to_uint8(la, "x").tolist() == [[100, 0]]
    rgba = Image.frombytes("RGBa", (1, 1), bytes([100, 50, 25, 128]))
    assert to_uint8(rgba, "x").tolist() == [[[100, 50, 25]]]


# ---------------------------------------------------------------------------------------------
# Colour spaces


CMYK_PIXELS = [(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255), (100, 50, 0, 60)]
# round((255 - C) (255 - K) / 255): 155 * 195 / 255 = 118.53, 205 * 195 / 255 = 156.76
CMYK_AS_RGB = [[255, 255, 255], [0, 255, 255], [0, 0, 0], [119, 157, 195]]


def test_cmyk_tiff(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        Image.frombytes("CMYK", (4, 1), bytes(v for p in CMYK_PIXELS for v in p)).save(path)

    assert read_one(tmp_path, "cmyk.tif", write, "CMYK").tolist() == [CMYK_AS_RGB]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        Image.new("CMYK", (16, 16), CMYK_PIXELS[3]).save(path, quality=95)

    got = read_one(tmp_path, "cmyk.jpg", write, "CMYK")
    assert np.abs(got.astype(int) - CMYK_AS_RGB[3]).max() <= 2  # JPEG is lossy


# Y 100, Cb 90, Cr 200: R = 100 + 1.402 * 72 = 200.94, G = 100 + 0.344136 * 38 - 0.714136 * 72
# = 61.66, B = 100 - 1.772 * 38 = 32.66
YCBCR_AS_RGB = [201, 62, 33]


def test_ycbcr_tiff(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        Image.frombytes("YCbCr", (2, 1), bytes([90, 128, 128, 100, 90, 200])).save(path)

    got = read_one(tmp_path, "ycc.tif", write, "YCbCr")
    assert got[0, 0].tolist() == [90, 90, 90]
    assert np.abs(got[0, 1].astype(int) - YCBCR_AS_RGB).max() <= 1  # Pillow's fixed point


def test_ycbcr_jpeg(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        Image.new("YCbCr", (16, 16), (100, 90, 200)).save(path, quality=95)

    got = read_one(tmp_path, "ycc.jpg", write, "RGB")  # libjpeg converts to RGB
    assert np.abs(got[8, 8].astype(int) - YCBCR_AS_RGB).max() <= 2


def test_subsampled_ycbcr_tiff_refused(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        info = TiffImagePlugin.ImageFileDirectory_v2()
        info[530] = (2, 2)  # YCbCrSubsampling: Pillow would ignore it
        info.tagtype[530] = 3
        Image.new("YCbCr", (2, 2), (90, 128, 128)).save(path, tiffinfo=info)

    message = refusal(tmp_path, "sub.tif", write)
    assert "image mode YCbCr (TIFF with subsampled or limited-range chroma)" in message


def test_lab_tiff_refused(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        Image.frombytes("LAB", (1, 1), bytes([255, 0, 0])).save(path)

    message = refusal(tmp_path, "lab.tif", write)
    assert message.endswith(
        "lab.tif: image mode LAB is not supported; convert it to 8-bit grayscale or RGB."
    )


def test_hsv_matches_colorsys() -> None:
    pixels = [(0, 255, 255), (85, 255, 255), (0, 128, 255), (200, 30, 77)]
    image = Image.frombytes("HSV", (4, 1), bytes(v for p in pixels for v in p))
    expected = [
        [round(c * 255) for c in colorsys.hsv_to_rgb(h / 255, s / 255, v / 255)]
        for h, s, v in pixels
    ]
    assert expected[:2] == [[255, 0, 0], [0, 255, 0]]
    assert to_uint8(image, "x").tolist() == [expected]


def test_rgbx_drops_padding() -> None:
    image = Image.frombytes("RGBX", (1, 1), bytes([1, 2, 3, 99]))
    assert to_uint8(image, "x").tolist() == [[[1, 2, 3]]]


# ---------------------------------------------------------------------------------------------
# Cache


def test_cache_from_older_decoder_is_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "imgs" / "a" / "0.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(np.full((2, 2), 32768, np.uint16)).save(path)
    cache = tmp_path / "cache"
    with monkeypatch.context() as patch:
        patch.setattr(decode_cache, "CACHE_VERSION", 1)
        clipped = np.full((2, 2), 255, np.uint8)  # what the old I;16 -> L conversion gave
        patch.setattr(images_module, "_decode_image", lambda data, where: clipped)
        assert int(read_image_folder(tmp_path / "imgs", cache_dir=cache).images.max()) == 255
    assert decode_cache.CACHE_VERSION > 1
    fresh = read_image_folder(tmp_path / "imgs", cache_dir=cache)
    assert set(fresh.images.flatten().tolist()) == {128}
    assert len(list(cache.iterdir())) == 2
