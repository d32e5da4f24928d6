"""Fonts for rendered text: every usable font installed here (DejaVu faces first), and Pillow's
built-in font. Nothing is bundled or downloaded."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEFAULT_FONT = "pillow-default"
PREFERRED = (
    "DejaVuSans",
    "DejaVuSans-Bold",
    "DejaVuSerif",
    "DejaVuSerif-Bold",
    "DejaVuSansMono-Bold",
    "DejaVuSansCondensed-Bold",
)
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
FONT_SUFFIXES = (".ttf", ".otf")
# Every character random_text can produce; a font must draw each one (not its missing-glyph box).
NEEDED_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@functools.lru_cache(maxsize=1)
def _installed() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in FONT_DIRS:
        if root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in FONT_SUFFIXES):
                found.setdefault(path.stem, path)
    return found


SAMPLE, MIN_WEIGHT = "Hamburg0", 1.5  # solid ink per row and character at 24 px; below: hairline faces


def _draws_text(path: Path) -> bool:
    """True when the font opens, draws every needed character as its own glyph, and its strokes are
    thick enough to read at small sizes (not a hairline face such as ExtraLight)."""
    try:
        font = ImageFont.truetype(str(path), 24, layout_engine=ImageFont.Layout.BASIC)
        missing = bytes(font.getmask("\uffff"))
        masks = [bytes(font.getmask(c)) for c in NEEDED_CHARACTERS]
        sample = font.getmask(SAMPLE)
    except (OSError, ValueError):
        return False
    if not all(m and m != missing and any(m) for m in masks) or len(set(masks)) < len(masks) - 2:
        return False
    solid = int((np.asarray(sample, dtype=np.uint8) >= 200).sum())
    return solid >= MIN_WEIGHT * sample.size[1] * len(SAMPLE)


def _pillow_default_works() -> bool:
    try:
        ImageFont.load_default(size=12)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType
        return False
    return True


@functools.lru_cache(maxsize=1)
def available_fonts() -> tuple[str, ...]:
    """Font names usable here, in a fixed order: the DejaVu faces above, every other installed font
    that draws letters and digits (by name), then Pillow's default."""
    installed = _installed()
    usable = [n for n in sorted(installed) if _draws_text(installed[n])]
    names = [n for n in PREFERRED if n in usable] + [n for n in usable if n not in PREFERRED]
    if _pillow_default_works() or not names:
        names.append(DEFAULT_FONT)
    return tuple(names)


def version1_fonts() -> tuple[str, ...]:
    """The fonts generator version 1 used: the DejaVu faces above that are installed, then Pillow's default."""
    names = [n for n in PREFERRED if n in _installed()]
    if _pillow_default_works() or not names:
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
    return text_layout(text, font_name, size, angle)[0]


def text_layout(
    text: str, font_name: str, size: int, angle: float
) -> tuple[np.ndarray, list[tuple[float, float] | None]]:
    """``text_alpha``'s coverage, and the centre (x, y) of each character's ink in its pixel
    coordinates (continuous: pixel (i, j) spans [i, i + 1)); None for characters without ink."""
    font = load_font(font_name, size)
    left, top, right, bottom = font.getbbox(text)
    pad = 2
    canvas = Image.new("L", (int(right - left) + 2 * pad, int(bottom - top) + 2 * pad), 0)
    origin = (pad - left, pad - top)
    ImageDraw.Draw(canvas).text(origin, text, fill=255, font=font)
    centres: list[tuple[float, float] | None] = []
    for index, char in enumerate(text):
        ink = font.getbbox(char)
        if char.isspace() or ink[2] <= ink[0]:
            centres.append(None)
            continue
        advance = font.getlength(text[:index])
        centres.append((origin[0] + advance + (ink[0] + ink[2]) / 2, origin[1] + (ink[1] + ink[3]) / 2))
    if angle:
        before = canvas.size
        canvas = canvas.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        centres = [None if c is None else _rotated(c, before, canvas.size, angle) for c in centres]
    box = canvas.getbbox()
    if box is not None:
        canvas = canvas.crop(box)
        centres = [None if c is None else (c[0] - box[0], c[1] - box[1]) for c in centres]
    return np.asarray(canvas, dtype=np.uint8), centres


def _rotated(point: tuple[float, float], before: tuple[int, int], after: tuple[int, int], angle: float):
    """Where ``Image.rotate(angle, expand=True)`` (counter-clockwise about the centre) moves ``point``."""
    t = math.radians(angle)
    dx, dy = point[0] - before[0] / 2, point[1] - before[1] / 2
    return (after[0] / 2 + dx * math.cos(t) + dy * math.sin(t), after[1] / 2 - dx * math.sin(t) + dy * math.cos(t))
