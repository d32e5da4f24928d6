"""Ground truth of one scene: background, objects and text, with pixel and normalised geometry."""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]  # pixel edges: x_min, y_min, x_max, y_max (max exclusive)


@dataclass(frozen=True)
class Background:
    kind: str  # flat | gradient | noise | stripes
    tones: tuple[RGB, ...]  # one tone, or two for gradient and stripes
    dark: bool
    angle: float  # degrees, direction of gradients and stripes
    period: float  # stripe period in pixels
    noise: float  # noise standard deviation (0..255 scale)
    noise_seed: int
    colour: str | None = None  # "white" or "black" for a pure background, else None

    @property
    def tone(self) -> str:
        return "dark" if self.dark else "light"


@dataclass(frozen=True)
class Effects:
    """Photo-like degradations of the finished picture, applied in this order (0: not applied)."""

    blur: float = 0.0  # Gaussian blur radius in pixels
    noise: float = 0.0  # Gaussian sensor noise standard deviation (0..255 scale)
    noise_seed: int = 0
    jpeg: int = 0  # JPEG quality of one encode and decode

    def to_dict(self) -> dict:
        return {"blur": round(self.blur, 3), "noise": round(self.noise, 3), "jpeg": self.jpeg}


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    rgb: RGB  # the exact fill or stroke colour, after any jitter
    size: str  # tiny | small | medium | large | huge
    centre: tuple[float, float]  # pixels; inside the shape (the hole, for an outline) and never covered
    radius: float
    rotation: float
    box: Box  # tight box of the visible pixels
    occlusion: float  # share of the shape's pixels covered by later layers
    occluded_by: tuple[int, ...]  # indices of the objects drawn over it
    stroke: float = 0.0  # outline width in pixels; 0: filled

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def style(self) -> str:
        return "outline" if self.stroke else "filled"


@dataclass(frozen=True)
class SceneText:
    text: str
    colour: str
    rgb: RGB
    font: str
    size: int  # font size in pixels
    angle: float  # degrees, counter-clockwise
    box: Box  # the rendered glyphs' patch; its top-left is where the patch is pasted


@dataclass(frozen=True)
class Scene:
    seed: int
    index: int
    width: int
    height: int
    background: Background
    objects: tuple[SceneObject, ...]
    texts: tuple[SceneText, ...]
    effects: Effects = Effects()

    def norm_box(self, box: Box) -> list[float]:
        w, h = self.width, self.height
        return [round(box[0] / w, 4), round(box[1] / h, 4), round(box[2] / w, 4), round(box[3] / h, 4)]

    def norm_point(self, obj: SceneObject) -> list[float]:
        return [round(obj.centre[0] / self.width, 4), round(obj.centre[1] / self.height, 4)]

    def to_dict(self) -> dict:
        """JSON-ready ground truth."""
        bg = self.background
        return {
            "seed": self.seed,
            "scene": self.index,
            "width": self.width,
            "height": self.height,
            "background": {"kind": bg.kind, "tone": bg.tone, "tones": [list(t) for t in bg.tones], "colour": bg.colour},
            "objects": [
                {
                    "shape": o.shape,
                    "colour": o.colour,
                    "size": o.size,
                    "rgb": list(o.rgb),
                    "style": o.style,
                    "stroke": round(o.stroke, 2),
                    "box": list(o.box),
                    "box_norm": self.norm_box(o.box),
                    "centre": [round(o.centre[0], 2), round(o.centre[1], 2)],
                    "point_norm": self.norm_point(o),
                    "radius": round(o.radius, 2),
                    "rotation": round(o.rotation, 2),
                    "occlusion": round(o.occlusion, 4),
                    "occluded_by": list(o.occluded_by),
                }
                for o in self.objects
            ],
            "texts": [
                {
                    "text": t.text,
                    "colour": t.colour,
                    "rgb": list(t.rgb),
                    "font": t.font,
                    "size": t.size,
                    "angle": round(t.angle, 2),
                    "box": list(t.box),
                    "box_norm": self.norm_box(t.box),
                }
                for t in self.texts
            ],
            "effects": self.effects.to_dict(),
        }
