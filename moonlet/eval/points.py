"""Pointing scores: points inside ground-truth boxes, or distances to ground-truth points."""

from __future__ import annotations

import math
from collections.abc import Sequence

MISS_DISTANCE = math.sqrt(2.0)  # the diagonal of the normalised image: no point predicted


def inside(point: Sequence[float], box: Sequence[float]) -> bool:
    """Whether (x, y) lies in [x_min, x_max] x [y_min, y_max]."""
    x, y = point
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def point_in_box(points: Sequence[Sequence[float]], boxes: Sequence[Sequence[float]]) -> dict[str, float]:
    """``hits``: predicted points inside some box; ``covered``: boxes holding a predicted point."""
    hits = sum(any(inside(p, b) for b in boxes) for p in points)
    covered = sum(any(inside(p, b) for p in points) for b in boxes)
    return {"points": len(points), "hits": hits, "boxes": len(boxes), "covered": covered}


def nearest_distances(points: Sequence[Sequence[float]], gold: Sequence[Sequence[float]]) -> list[float]:
    """For each gold point, the distance to the nearest predicted point (``MISS_DISTANCE`` if none)."""
    return [min((math.dist(g, p) for p in points), default=MISS_DISTANCE) for g in gold]
