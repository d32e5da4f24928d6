"""Shape outlines as polygons and their anti-aliased coverage on the pixel grid."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw

# Largest rotation (degrees, either way) per shape; squares stay square-looking, stars and
# hexagons are symmetric so any turn is fine.
MAX_ROTATION = {"circle": 0.0, "square": 15.0, "triangle": 20.0, "star": 36.0, "hexagon": 30.0, "heart": 15.0}


def _regular(n: int, radius: float, start: float) -> np.ndarray:
    a = start + np.arange(n) * 2.0 * math.pi / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], 1)


def _star() -> np.ndarray:
    outer = _regular(5, 1.12, -math.pi / 2)
    inner = _regular(5, 0.48, -math.pi / 2 + math.pi / 5)
    return np.stack([outer, inner], 1).reshape(10, 2)


def _heart() -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, 72, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    y = -(y + 2.6)  # image y grows downwards; centre the outline's box on the origin
    return np.stack([x, y], 1) / 15.0


# Unit outlines, centred on the shape's reference point (which is always inside the shape).
UNIT = {
    "circle": _regular(64, 1.0, 0.0),
    "square": np.array([[-0.85, -0.85], [0.85, -0.85], [0.85, 0.85], [-0.85, 0.85]]),
    "triangle": _regular(3, 1.15, -math.pi / 2),
    "star": _star(),
    "hexagon": _regular(6, 1.0, 0.0),
    "heart": _heart(),
}


def _inradius(points: np.ndarray) -> float:
    """Distance from the origin (the reference point) to the nearest edge of a closed polygon."""
    a, b = points, np.roll(points, -1, axis=0)
    ab = b - a
    t = np.clip(-(a * ab).sum(1) / (ab * ab).sum(1), 0.0, 1.0)
    return float(np.linalg.norm(a + t[:, None] * ab, axis=1).min())


# Radius of the largest circle around the reference point inside each unit shape (outline widths are
# kept well below it, so an outline's hole shows).
INRADIUS = {name: _inradius(points) for name, points in UNIT.items()}


@dataclass(frozen=True)
class Coverage:
    """Coverage 0..255 of a shape over the patch whose top-left pixel is (x0, y0)."""

    x0: int
    y0: int
    alpha: np.ndarray  # uint8, shape (h, w)

    def full(self, width: int, height: int) -> np.ndarray:
        """The coverage pasted into a zero (height, width) canvas."""
        out = np.zeros((height, width), np.uint8)
        h, w = self.alpha.shape
        x0, y0 = max(self.x0, 0), max(self.y0, 0)
        x1, y1 = min(self.x0 + w, width), min(self.y0 + h, height)
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = self.alpha[y0 - self.y0 : y1 - self.y0, x0 - self.x0 : x1 - self.x0]
        return out


def outline(shape: str, cx: float, cy: float, radius: float, rotation: float) -> np.ndarray:
    """Polygon vertices in pixels (x, y), rotation in degrees."""
    a = math.radians(rotation)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return UNIT[shape] @ rot.T * radius + np.array([cx, cy])


def coverage(points: np.ndarray, supersample: int, stroke: float = 0.0) -> Coverage:
    """Rasterise a polygon ``supersample`` times larger and box-filter it down; with ``stroke`` > 0
    only the band within ``stroke`` pixels inside its edge is drawn (an outline, joins rounded)."""
    x0, y0 = int(math.floor(points[:, 0].min())) - 1, int(math.floor(points[:, 1].min())) - 1
    x1, y1 = int(math.ceil(points[:, 0].max())) + 1, int(math.ceil(points[:, 1].max())) + 1
    w, h, s = x1 - x0, y1 - y0, supersample
    canvas = Image.new("L", (w * s, h * s), 0)
    scaled = [((x - x0) * s, (y - y0) * s) for x, y in points.tolist()]
    ImageDraw.Draw(canvas).polygon(scaled, fill=255)
    if stroke > 0:
        canvas = ImageChops.darker(canvas, _band(scaled, canvas.size, stroke * s))
    if s > 1:
        canvas = canvas.resize((w, h), Image.Resampling.BOX)
    return Coverage(x0, y0, np.asarray(canvas, dtype=np.uint8))


def _band(points: list[tuple[float, float]], size: tuple[int, int], half: float) -> Image.Image:
    """Everything within ``half`` pixels of the closed polyline ``points``: wide edges, round joins."""
    band = Image.new("L", size, 0)
    draw = ImageDraw.Draw(band)
    width = max(1, int(round(2 * half)))
    for a, b in zip(points, points[1:] + points[:1]):
        draw.line([a, b], fill=255, width=width)
    for x, y in points:
        draw.ellipse([x - half, y - half, x + half, y + half], fill=255)
    return band
