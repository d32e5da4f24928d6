"""Fonts for rendered text: DejaVu faces when installed, Pillow's built-in font otherwise."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEFAULT_FONT = "pillow-default"
PREFERRED = (
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSerif", "DejaVuSerif-Bold",
    "DejaVuSansMono-Bold", "DejaVuSansCondensed-Bold",
)
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")


@functools.lru_cache(maxsize=1)
def _installed() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in FONT_DIRS:
        if root.is_dir():
            for path in sorted(root.rglob("*.ttf")):
                found.setdefault(path.stem, path)
    return found


@functools.lru_cache(maxsize=1)
def available_fonts() -> tuple[str, ...]:
    """Font names usable here, in a fixed order: the DejaVu faces found, then Pillow's default."""
    installed = _installed()
    names = [n for n in PREFERRED if n in installed]
    try:
        ImageFont.load_default(size=12)
        names.append(DEFAULT_FONT)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType
        if not names:
            names.append(DEFAULT_FONT)
    return tuple(names)


@functools.lru_cache(maxsize=256)
def load_font(name: str, size: int):
    """A font by name (see ``available_fonts``) or path, at ``size`` pixels, with basic layout."""
    if name == DEFAULT_FONT:
        try:
            font = ImageFont.load_default(size=size)
        except (TypeError, ImportError, OSError):
            return ImageFont.load_default()
        if isinstance(font, ImageFont.FreeTypeFont):
            return font.font_variant(layout_engine=ImageFont.Layout.BASIC)
        return font
    path = _installed().get(name, Path(name))
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)


def text_alpha(text: str, font_name: str, size: int, angle: float) -> np.ndarray:
    """Coverage (uint8) of ``text`` drawn in white and turned ``angle`` degrees, cropped tight."""
    font = load_font(font_name, size)
    left, top, right, bottom = font.getbbox(text)
    pad = 2
    canvas = Image.new("L", (int(right - left) + 2 * pad, int(bottom - top) + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), text, fill=255, font=font)
    if angle:
        canvas = canvas.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    box = canvas.getbbox()
    if box is not None:
        canvas = canvas.crop(box)
    return np.asarray(canvas, dtype=np.uint8)
