"""Procedurally rendered digits: a few glyph styles, then random affine jitter and stroke width.

Templates are rendered once per process: a built-in 5×7 dot-matrix set and Pillow's default font
(``ImageFont.load_default()``, FreeType when Pillow has it, else its bitmap font) in a regular
and a bold weight. Each glyph is cropped to its ink, scaled to fit a 20-pixel box and centred on
a 28×28 canvas, the layout of an MNIST digit. :func:`render_digits` then jitters a whole batch at
once with tensor ops: a style, a stroke width (max-pool dilation), one ``grid_sample`` call for
rotation, scale, shear and shift, and an ink intensity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

CELL = 28  # side of one digit canvas, as in MNIST
BOX = 20  # the glyph fits in a BOX×BOX square centred on the canvas

# A 5×7 dot-matrix digit set (the classic HD44780 character-LCD shapes).
GLYPHS_5X7: dict[int, tuple[str, ...]] = {
    0: ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    1: ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    2: ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    3: ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    4: ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    5: ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    6: ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    7: ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    8: ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    9: ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
}


@dataclass(frozen=True)
class Jitter:
    """Ranges of the per-digit random distortion (all uniform).

    ``rotation`` in degrees (±), ``scale`` a (low, high) zoom, ``shear`` (±, normalised units),
    ``shift`` (±, in pixels of the 28×28 canvas), ``strokes`` the dilation kernel sizes to pick
    from (1: as rendered), ``intensity`` the (low, high) ink level.
    """

    rotation: float = 12.0
    scale: tuple[float, float] = (0.85, 1.1)
    shear: float = 0.15
    shift: float = 2.0
    strokes: tuple[int, ...] = (1, 2, 3)
    intensity: tuple[float, float] = (0.75, 1.0)


NO_JITTER = Jitter(0.0, (1.0, 1.0), 0.0, 0.0, (1,), (1.0, 1.0))


def _fit_to_cell(ink: Tensor, mode: str) -> Tensor:
    """Crop a 2-D glyph (values in [0, 1]) to its ink, scale it into the box, centre on a cell."""
    rows = torch.nonzero(ink.amax(dim=1) > 0.05).flatten()
    cols = torch.nonzero(ink.amax(dim=0) > 0.05).flatten()
    ink = ink[int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]
    h, w = ink.shape
    factor = BOX / max(h, w)
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    kwargs = {"antialias": True} if mode == "bilinear" else {}
    glyph = F.interpolate(ink[None, None], size=size, mode=mode, **kwargs)[0, 0].clamp(0, 1)
    cell = torch.zeros(CELL, CELL)
    top, left = (CELL - size[0]) // 2, (CELL - size[1]) // 2
    cell[top : top + size[0], left : left + size[1]] = glyph
    return cell


def _dot_matrix_style() -> Tensor:
    """(10, 28, 28) templates from the 5×7 set (nearest-neighbour upscaling: square dots)."""
    cells = []
    for digit in range(10):
        bits = torch.tensor([[float(c) for c in row] for row in GLYPHS_5X7[digit]])
        cells.append(_fit_to_cell(bits, mode="nearest"))
    return torch.stack(cells)


def _font_style(stroke: int) -> Tensor | None:
    """(10, 28, 28) templates in Pillow's default font; None when Pillow cannot render."""
    try:
        try:
            font = ImageFont.load_default(size=48)
        except TypeError:  # Pillow < 10.1: no size argument, a small bitmap font
            font = ImageFont.load_default()
        cells = []
        for digit in range(10):
            image = Image.new("L", (96, 96), 0)
            ImageDraw.Draw(image).text(
                (16, 8), str(digit), fill=255, font=font, stroke_width=stroke, stroke_fill=255
            )
            ink = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
            cells.append(_fit_to_cell(ink, mode="bilinear"))
        return torch.stack(cells)
    except Exception:  # any font failure leaves the built-in 5×7 glyphs
        return None


@lru_cache(maxsize=1)
def digit_templates() -> Tensor:
    """(S, 10, 28, 28) float templates in [0, 1]: style s, digit v. Style 0 is the 5×7 set."""
    styles = [_dot_matrix_style()]
    for stroke in (0, 2):
        style = _font_style(stroke)
        if style is not None:
            styles.append(style)
    return torch.stack(styles)


def _affine(count: int, jitter: Jitter, generator: torch.Generator) -> Tensor:
    """(count, 2, 3) maps from output to input coordinates (``affine_grid`` convention).

    Zooming the glyph by s divides the input coordinates by s; x' = (R(θ)·Sh / s) x + t.
    """

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(count, generator=generator)

    angle = uniform(-jitter.rotation, jitter.rotation) * (math.pi / 180.0)
    scale = uniform(*jitter.scale)
    shear = uniform(-jitter.shear, jitter.shear)
    shift = 2.0 * jitter.shift / CELL  # pixels -> normalised units
    tx, ty = uniform(-shift, shift), uniform(-shift, shift)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    row0 = torch.stack([cos, -sin + shear * cos, tx], dim=1)
    row1 = torch.stack([sin, cos + shear * sin, ty], dim=1)
    return torch.stack([row0, row1], dim=1)


def _stroke(cells: Tensor, jitter: Jitter, generator: torch.Generator) -> Tensor:
    """Per-cell stroke width: dilate each (N, 1, 28, 28) cell with a kernel drawn from
    ``jitter.strokes``."""
    if jitter.strokes == (1,):
        return cells
    choice = torch.randint(len(jitter.strokes), (len(cells),), generator=generator)
    out = cells.clone()
    for i, kernel in enumerate(jitter.strokes):
        chosen = torch.nonzero(choice == i).flatten()
        if kernel != 1 and len(chosen):
            out[chosen] = _dilate(cells[chosen], kernel)
    return out


def _dilate(cells: Tensor, kernel: int) -> Tensor:
    """Grey-level dilation by a kernel×kernel square, keeping the 28×28 size (even kernels pad
    one more pixel on the right and bottom)."""
    if kernel == 1:
        return cells
    low, high = (kernel - 1) // 2, kernel // 2
    padded = F.pad(cells, (low, high, low, high))
    return F.max_pool2d(padded, kernel, stride=1)


def render_digits(
    digits: Tensor, generator: torch.Generator, jitter: Jitter | None = None
) -> Tensor:
    """(M,) digit values -> (M, 28, 28) float images in [0, 1], each randomly styled.

    All random numbers come from ``generator``, in a fixed order, so a seed fixes the output.
    """
    jitter = jitter or Jitter()
    templates = digit_templates()
    count = len(digits)
    style = torch.randint(len(templates), (count,), generator=generator)
    cells = templates[style, digits.long()].unsqueeze(1)
    cells = _stroke(cells, jitter, generator)
    theta = _affine(count, jitter, generator)
    grid = F.affine_grid(theta, [count, 1, CELL, CELL], align_corners=False)
    cells = F.grid_sample(cells, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ink = jitter.intensity[0] + (jitter.intensity[1] - jitter.intensity[0]) * torch.rand(
        count, 1, 1, 1, generator=generator
    )
    return (cells * ink).clamp_(0.0, 1.0)[:, 0]
