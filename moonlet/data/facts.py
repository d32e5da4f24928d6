"""Facts read off a scene's ground truth: references, counts, regions and relative positions.

Positions use object centres in normalised coordinates. A relation closer than ``margin`` is
ambiguous (``None``), and questions that would depend on it are not asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from .scene import Scene, SceneObject, SceneText

DIRECTIONS = ("left", "right", "above", "below")


@dataclass(frozen=True)
class Ref:
    """A description: any of size, colour and shape (None: unconstrained)."""

    size: str | None = None
    colour: str | None = None
    shape: str | None = None

    def matches(self, obj: SceneObject) -> bool:
        return all(
            want is None or want == have
            for want, have in ((self.size, obj.size), (self.colour, obj.colour), (self.shape, obj.shape))
        )


class Facts:
    """``directions``: the spatial relations questions may ask about (all four by default; fewer
    for a curriculum dataset)."""

    def __init__(self, scene: Scene, margin: float, directions: tuple[str, ...] = DIRECTIONS):
        self.scene = scene
        self.objects = scene.objects
        self.margin = margin
        self.directions = directions
        self._selected: dict[Ref, list[int]] = {}

    @property
    def text(self) -> SceneText | None:
        return self.scene.texts[0] if self.scene.texts else None

    def select(self, ref: Ref) -> list[int]:
        """Indices of the objects matching ``ref`` (memoised; treat the list as read-only)."""
        if ref not in self._selected:
            self._selected[ref] = [i for i, o in enumerate(self.objects) if ref.matches(o)]
        return self._selected[ref]

    def count(self, ref: Ref) -> int:
        return len(self.select(ref))

    def unique_refs(self, i: int, use_colour: bool = True, use_shape: bool = True) -> list[Ref]:
        """The descriptions that pick out object ``i`` alone."""
        o = self.objects[i]
        options = []
        if use_shape:
            options += [Ref(shape=o.shape), Ref(size=o.size, shape=o.shape)]
        if use_colour:
            options += [Ref(colour=o.colour), Ref(size=o.size, colour=o.colour)]
        if use_colour and use_shape:
            options += [Ref(colour=o.colour, shape=o.shape)]
        return [r for r in options if self.select(r) == [i]]

    def centre(self, i: int) -> tuple[float, float]:
        o = self.objects[i]
        return o.centre[0] / self.scene.width, o.centre[1] / self.scene.height

    def side(self, i: int, j: int, direction: str) -> bool | None:
        """Is object ``i`` ``direction`` of object ``j``? None when too close to call."""
        (xi, yi), (xj, yj) = self.centre(i), self.centre(j)
        d = {"left": xj - xi, "right": xi - xj, "above": yj - yi, "below": yi - yj}[direction]
        if abs(d) <= self.margin:
            return None
        return d > 0

    def region(self, x: float, y: float, strict: bool = True) -> str | None:
        """One of nine regions (top left, top, ..., center, ..., bottom right); None near a border
        between regions when ``strict``."""
        if strict and any(abs(v - b) <= self.margin / 2 for v in (x, y) for b in (1 / 3, 2 / 3)):
            return None
        col = "left" if x < 1 / 3 else "right" if x > 2 / 3 else ""
        row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else ""
        return " ".join(w for w in (row, col) if w) or "center"

    def object_region(self, i: int, strict: bool = True) -> str | None:
        return self.region(*self.centre(i), strict=strict)

    def text_region(self, strict: bool = True) -> str | None:
        t = self.text
        if t is None:
            return None
        x = (t.box[0] + t.box[2]) / 2 / self.scene.width
        y = (t.box[1] + t.box[3]) / 2 / self.scene.height
        return self.region(x, y, strict)
