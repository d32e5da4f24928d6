"""Named colours, background tones and colour contrast (CIE Lab, delta E 1976)."""

from __future__ import annotations

import colorsys

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "green": (35, 160, 60),
    "blue": (30, 80, 225),
    "yellow": (250, 215, 30),
    "orange": (250, 130, 20),
    "purple": (130, 50, 185),
    "pink": (250, 135, 195),
    "brown": (125, 75, 35),
    "black": (20, 20, 20),
    "white": (250, 250, 250),
    "gray": (130, 130, 130),
}
# Other common values of each colour (CSS, paint programs, plotting libraries), each nearest its own
# name in Lab: what pictures drawn by other code tend to use. Flat colours pick from these and COLOURS.
STANDARD_RGB: dict[str, tuple[tuple[int, int, int], ...]] = {
    "red": ((255, 0, 0), (200, 0, 0), (237, 28, 36)),
    "green": ((0, 128, 0), (0, 200, 0), (0, 255, 0), (34, 177, 76)),
    "blue": ((0, 0, 255), (0, 0, 200), (0, 112, 192), (63, 72, 204)),
    "yellow": ((255, 255, 0), (255, 204, 0)),
    "orange": ((255, 165, 0), (255, 128, 0), (255, 140, 0)),
    "purple": ((128, 0, 128), (160, 32, 240), (112, 48, 160)),
    "pink": ((255, 105, 180), (255, 174, 201)),
    "brown": ((139, 69, 19), (150, 75, 0)),
    "black": ((0, 0, 0),),
    "white": ((255, 255, 255),),
    "gray": ((128, 128, 128), (160, 160, 160), (100, 100, 100)),
}
PURE_BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}  # by tone: light, dark


def to_lab(rgb) -> np.ndarray:
    """sRGB (0..255, shape (..., 3)) to CIE Lab (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


def delta_e(a, b) -> float:
    return float(np.linalg.norm(to_lab(a) - to_lab(b)))


_COLOUR_LAB = to_lab(list(COLOURS.values()))


def nearest_colour(rgb) -> str:
    """The named colour closest to ``rgb`` in Lab."""
    return list(COLOURS)[int(np.argmin(np.linalg.norm(_COLOUR_LAB - to_lab(rgb), axis=-1)))]


def contrasting(tones: list[tuple[int, int, int]], min_delta: float, min_lightness: float = 0.0) -> list[str]:
    """Names of the colours at least ``min_delta`` (delta E) and ``min_lightness`` (L*) away from
    every background tone."""
    tone_lab = to_lab(tones)
    dist = np.linalg.norm(_COLOUR_LAB[:, None, :] - tone_lab[None, :, :], axis=-1)
    light = np.abs(_COLOUR_LAB[:, None, 0] - tone_lab[None, :, 0])
    ok = ((dist >= min_delta) & (light >= min_lightness)).all(axis=1)
    return [n for n, good in zip(COLOURS, ok) if good]


def background_tone(rng: np.random.Generator, dark: bool) -> tuple[int, int, int]:
    """A muted tone: pale (light backgrounds) or deep (dark backgrounds)."""
    hue = rng.random()
    sat = rng.uniform(0.03, 0.25) if not dark else rng.uniform(0.05, 0.35)
    val = rng.uniform(0.82, 0.97) if not dark else rng.uniform(0.10, 0.26)
    return tuple(int(round(255 * v)) for v in colorsys.hsv_to_rgb(hue, sat, val))


def shifted_tone(rng: np.random.Generator, tone: tuple[int, int, int], dark: bool) -> tuple[int, int, int]:
    """A second tone near ``tone`` (for gradients and stripes), staying in the same family."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in tone))
    h = (h + rng.uniform(-0.12, 0.12)) % 1.0
    lo, hi = (0.10, 0.30) if dark else (0.76, 0.98)
    v = float(np.clip(v + rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.10), lo, hi))
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


def jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    """``rgb`` moved by a shared brightness offset of up to ``amount`` and a third of that per channel."""
    if amount <= 0:
        return tuple(rgb)
    shift = int(rng.integers(-amount, amount + 1)) + rng.integers(-(amount // 3), amount // 3 + 1, size=3)
    return tuple(int(v) for v in np.clip(np.asarray(rgb) + shift, 0, 255))


def flat_colour(
    rng: np.random.Generator, name: str, tones: list[tuple[int, int, int]], min_delta: float, min_lightness: float = 0.0
) -> tuple[int, int, int]:
    """One of the standard values of colour ``name`` (``COLOURS`` or ``STANDARD_RGB``), exact, among
    those at least ``min_delta`` (delta E) and ``min_lightness`` (L*) from every background tone."""
    options = [COLOURS[name], *STANDARD_RGB[name]]
    tone_lab = to_lab(tones)
    labs = to_lab(options)
    dist = np.linalg.norm(labs[:, None, :] - tone_lab[None, :, :], axis=-1)
    light = np.abs(labs[:, None, 0] - tone_lab[None, :, 0])
    ok = [o for o, good in zip(options, ((dist >= min_delta) & (light >= min_lightness)).all(axis=1)) if good]
    ok = ok or [COLOURS[name]]
    return tuple(ok[int(rng.integers(len(ok)))])
