"""Scene sampling: background, object placement under occlusion rules, and text placement.

Everything is drawn from one ``numpy`` generator seeded by ``(seed, index)``, so scene ``index``
of ``seed`` is the same whatever else is generated, in whatever order or process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import SIZE_CLASSES, SceneConfig
from .effects import sample_effects
from .fonts import available_fonts, text_alpha
from .palette import COLOURS, PURE_BACKGROUNDS, background_tone, contrasting, flat_colour, jitter, shifted_tone
from .scene import Background, Scene, SceneObject, SceneText
from .shapes import INRADIUS, MAX_ROTATION, coverage, outline
from .words import random_text

SOLID = 128  # coverage at or above which a pixel belongs to a layer


def scene_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """The generator for one scene; ``stream`` separates layout (0) from annotation (1)."""
    if seed < 0 or index < 0:
        raise ValueError("seed and scene index must be non-negative")
    return np.random.default_rng([seed, index, stream])


@dataclass
class _Placed:
    shape: str
    colour: str
    rgb: tuple[int, int, int]
    size: str
    cx: float
    cy: float
    radius: float
    rotation: float
    stroke: float
    solid: np.ndarray  # bool (H, W): coverage >= SOLID
    touched: np.ndarray  # bool (H, W): coverage > 0
    visible: np.ndarray  # bool (H, W): solid and not under a later layer
    area: int
    occluded_by: list[int]
    win: tuple[slice, slice]  # the rows and columns the shape can touch
    visible_count: int


def _background(rng: np.random.Generator, cfg: SceneConfig) -> Background:
    dark = bool(rng.random() < 0.3)
    p = np.asarray(cfg.background_weights, dtype=float)
    kind = str(cfg.background_kinds[int(rng.choice(len(p), p=p / p.sum()))])
    tone = background_tone(rng, dark)
    tones = (tone, shifted_tone(rng, tone, dark)) if kind in ("gradient", "stripes") else (tone,)
    angle = float(rng.uniform(0, 180))
    period = float(rng.uniform(0.05, 0.14) * min(cfg.width, cfg.height))
    noise = float(rng.uniform(4, 10)) if kind == "noise" else 0.0
    noise_seed = int(rng.integers(2**31))
    pure = None
    if kind == "flat" and cfg.pure_background_probability and rng.random() < cfg.pure_background_probability:
        pure = "black" if dark else "white"
        tones = (PURE_BACKGROUNDS[pure],)
    return Background(
        kind=kind, tones=tones, dark=dark, angle=angle, period=period, noise=noise, noise_seed=noise_seed, colour=pure
    )


def _disc_clear(mask: np.ndarray, cx: float, cy: float, r: float) -> bool:
    """True when no pixel of ``mask`` lies within ``r`` of (cx, cy)."""
    h, w = mask.shape
    x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, w)
    y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, h)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    near = (xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2 <= r * r
    return not bool((mask[y0:y1, x0:x1] & near).any())


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Grow a boolean mask by ``r`` pixels in each direction (a square structuring element)."""
    rows = mask.copy()
    for d in range(1, r + 1):
        rows[:, d:] |= mask[:, :-d]
        rows[:, :-d] |= mask[:, d:]
    out = rows.copy()
    for d in range(1, r + 1):
        out[d:, :] |= rows[:-d, :]
        out[:-d, :] |= rows[d:, :]
    return out


def _window(patch) -> tuple[slice, slice]:
    h, w = patch.alpha.shape
    return slice(patch.y0, patch.y0 + h), slice(patch.x0, patch.x0 + w)


def _try_object(rng, cfg: SceneConfig, placed: list[_Placed], shape, colour, rgb, size, radius, stroke):
    w, h = cfg.width, cfg.height
    rotation = float(rng.uniform(-MAX_ROTATION[shape], MAX_ROTATION[shape]))
    cx = float(rng.uniform(radius * 0.9, w - radius * 0.9))
    cy = float(rng.uniform(radius * 0.9, h - radius * 0.9))
    pts = outline(shape, cx, cy, radius, rotation)
    if pts[:, 0].min() < 1 or pts[:, 1].min() < 1 or pts[:, 0].max() > w - 1 or pts[:, 1].max() > h - 1:
        return None
    patch = coverage(pts, cfg.supersample, stroke)
    win = _window(patch)
    solid, touched = patch.alpha >= SOLID, patch.alpha > 0  # within the window only
    if not solid.any():
        return None
    if stroke and any(not _disc_clear(o.touched, cx, cy, max(2.0, 0.3 * radius)) for o in placed):
        return None  # an outline's centre (its point) lies on no earlier object
    for other in placed:
        if not (touched & other.touched[win]).any():
            continue
        if other.colour == colour:
            return None  # same-coloured objects never touch, so each stays countable
        full = np.zeros((h, w), bool)
        full[win] = touched
        if not _disc_clear(full, other.cx, other.cy, max(2.0, 0.3 * other.radius)):
            return None
        covered = int((other.visible[win] & solid).sum())
        if other.visible_count - covered < (1.0 - cfg.max_occlusion) * other.area:
            return None
    full_solid, full_touched = np.zeros((h, w), bool), np.zeros((h, w), bool)
    full_solid[win], full_touched[win] = solid, touched
    area = int(solid.sum())
    return _Placed(
        shape,
        colour,
        rgb,
        size,
        cx,
        cy,
        radius,
        rotation,
        stroke,
        full_solid,
        full_touched,
        full_solid.copy(),
        area,
        [],
        win,
        area,
    )


def _colour_value(rng, cfg: SceneConfig, colour: str, tones: list, min_lightness: float = 0.0):
    """The exact colour drawn: a flat standard value (``flat_colour_probability``) or a jittered one."""
    if cfg.flat_colour_probability and rng.random() < cfg.flat_colour_probability:
        return flat_colour(rng, colour, tones, cfg.min_contrast, min_lightness)
    return jitter(rng, COLOURS[colour], cfg.colour_jitter)


def _stroke(rng, cfg: SceneConfig, shape: str, radius: float) -> float:
    """Outline width in pixels, or 0 for a filled shape. A stroke is at least 1 px and at most 40 % of
    the shape's inner radius, so the hole shows; shapes too small for that stay filled."""
    if not (cfg.outline_probability and rng.random() < cfg.outline_probability):
        return 0.0
    width = float(rng.uniform(*cfg.outline_width_range)) * min(cfg.width, cfg.height)
    cap = 0.4 * INRADIUS[shape] * radius
    return min(max(width, 1.0), cap) if cap >= 1.0 else 0.0


def _place_objects(rng, cfg: SceneConfig, allowed: list[str], tones: list) -> list[_Placed]:
    shapes = list(cfg.shapes)
    palette = [str(c) for c in rng.choice(allowed, size=min(int(rng.integers(2, 5)), len(allowed)), replace=False)]
    kinds = [str(s) for s in rng.choice(shapes, size=min(int(rng.integers(2, 5)), len(shapes)), replace=False)]
    count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    weights = np.asarray(cfg.size_weights, dtype=float)
    placed: list[_Placed] = []
    for _ in range(count):
        shape, colour = str(rng.choice(kinds)), str(rng.choice(palette))
        size_i = int(rng.choice(len(weights), p=weights / weights.sum()))
        lo, hi = cfg.size_radii[size_i]
        radius = float(rng.uniform(lo, hi) * min(cfg.width, cfg.height))
        rgb = _colour_value(rng, cfg, colour, tones)
        stroke = _stroke(rng, cfg, shape, radius)
        for _ in range(cfg.placement_tries):
            new = _try_object(rng, cfg, placed, shape, colour, rgb, SIZE_CLASSES[size_i], radius, stroke)
            if new is not None:
                for other in placed:
                    hidden = other.visible[new.win] & new.solid[new.win]
                    if hidden.any():
                        other.visible[new.win] &= ~hidden
                        other.visible_count -= int(hidden.sum())
                        other.occluded_by.append(len(placed))
                placed.append(new)
                break
    return placed


def _place_text(rng, cfg: SceneConfig, placed: list[_Placed], allowed: list[str], tones: list) -> SceneText | None:
    w, h = cfg.width, cfg.height
    fonts = cfg.fonts or available_fonts()
    text = random_text(rng)
    font = str(fonts[int(rng.integers(len(fonts)))])
    size = int(round(rng.uniform(*cfg.font_size_range) * min(w, h)))
    angle = float(rng.uniform(-cfg.max_text_angle, cfg.max_text_angle)) if rng.random() < 0.6 else 0.0
    colour = str(rng.choice(allowed))
    rgb = _colour_value(rng, cfg, colour, tones, cfg.min_text_lightness)
    blocked = np.zeros((h, w), bool)
    ys, xs = np.mgrid[0:h, 0:w]
    for p in placed:
        blocked |= p.touched
        if p.stroke:  # nor over an outline's centre, which is its point
            blocked |= (xs + 0.5 - p.cx) ** 2 + (ys + 0.5 - p.cy) ** 2 <= max(2.0, 0.3 * p.radius) ** 2
    grown = _dilate(blocked, 2)  # keep a 2-pixel gap between text and shapes
    while size >= 8:
        alpha = text_alpha(text, font, size, angle)
        th, tw = alpha.shape
        if tw <= w - 4 and th <= h - 4:
            break
        size = int(size * 0.8)
    else:
        return None
    ink = alpha > 0
    for _ in range(cfg.placement_tries):
        x0, y0 = int(rng.integers(2, w - tw - 1)), int(rng.integers(2, h - th - 1))
        if not (grown[y0 : y0 + th, x0 : x0 + tw] & ink).any():
            return SceneText(text, colour, rgb, font, size, angle, (x0, y0, x0 + tw, y0 + th))
    return None


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def sample_scene(seed: int, index: int, config: SceneConfig | None = None) -> Scene:
    """Scene ``index`` of ``seed``: same arguments, same scene, in any process."""
    cfg = config or SceneConfig()
    rng = scene_rng(seed, index)
    background = _background(rng, cfg)
    tones = list(background.tones)
    allowed = contrasting(tones, cfg.min_contrast) or ["red", "blue", "yellow"]
    placed = _place_objects(rng, cfg, allowed, tones)
    readable = contrasting(tones, cfg.min_contrast, cfg.min_text_lightness) or allowed
    text = _place_text(rng, cfg, placed, readable, tones) if rng.random() < cfg.text_probability else None
    objects = tuple(
        SceneObject(
            shape=p.shape,
            colour=p.colour,
            rgb=p.rgb,
            size=p.size,
            centre=(p.cx, p.cy),
            radius=p.radius,
            rotation=p.rotation,
            box=_box(p.visible),
            occlusion=1.0 - p.visible_count / p.area,
            occluded_by=tuple(p.occluded_by),
            stroke=p.stroke,
        )
        for p in placed
    )
    effects = sample_effects(rng, cfg)
    return Scene(seed, index, cfg.width, cfg.height, background, objects, (text,) if text else (), effects)
