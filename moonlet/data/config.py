"""Frozen configurations for scene generation and annotation."""

from __future__ import annotations

from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "heart")
SIZE_CLASSES = ("small", "medium", "large")
BACKGROUND_KINDS = ("flat", "gradient", "noise", "stripes")


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are laid out and drawn. Radii and font sizes are fractions of the shorter side."""

    width: int = 256
    height: int = 256
    min_objects: int = 1
    max_objects: int = 6
    shapes: tuple[str, ...] = SHAPES
    # Per size class: (min, max) radius as a fraction of min(width, height).
    size_radii: tuple[tuple[float, float], ...] = ((0.05, 0.07), (0.085, 0.11), (0.13, 0.16))
    size_weights: tuple[float, ...] = (0.35, 0.4, 0.25)
    background_kinds: tuple[str, ...] = BACKGROUND_KINDS
    background_weights: tuple[float, ...] = (0.3, 0.25, 0.25, 0.2)
    max_occlusion: float = 0.3  # largest share of an object's area later layers may cover
    min_contrast: float = 35.0  # CIE76 delta E between an object colour and every background tone
    min_text_lightness: float = 30.0  # text also differs from the background by this much in L*
    colour_jitter: int = 10  # per-channel uniform jitter on named colours
    supersample: int = 4  # shape edges are drawn this much larger, then box-filtered
    text_probability: float = 0.6
    fonts: tuple[str, ...] = ()  # font names or paths; empty: every font found here
    font_size_range: tuple[float, float] = (0.075, 0.13)
    max_text_angle: float = 15.0  # degrees, either way
    placement_tries: int = 40

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 32:
            raise ValueError("image size must be at least 32x32")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError("need 1 <= min_objects <= max_objects")
        unknown = set(self.shapes) - set(SHAPES)
        if unknown or not self.shapes:
            raise ValueError(f"unknown shapes {sorted(unknown)}; known: {', '.join(SHAPES)}")
        unknown = set(self.background_kinds) - set(BACKGROUND_KINDS)
        if unknown or len(self.background_kinds) != len(self.background_weights):
            raise ValueError("background_kinds must be known kinds with one weight each")
        if len(self.size_radii) != len(SIZE_CLASSES) or len(self.size_weights) != len(SIZE_CLASSES):
            raise ValueError("size_radii and size_weights need one entry per size class")
        if not 0.0 <= self.max_occlusion < 1.0:
            raise ValueError("max_occlusion must be in [0, 1)")
        if self.supersample < 1:
            raise ValueError("supersample must be >= 1")


@dataclass(frozen=True)
class AnnotationConfig:
    """How many rows of each kind one scene yields."""

    caption_lengths: tuple[str, ...] = ("short", "normal", "long")
    questions: int = 10
    detect: int = 2
    point: int = 2
    absent_share: float = 0.25  # share of questions/targets about things not in the scene
    prefix_share: float = 0.55  # share of questions given a lead-in phrase
    margin: float = 0.06  # normalised distance below which left/right/above/below is ambiguous

    def __post_init__(self) -> None:
        bad = set(self.caption_lengths) - {"short", "normal", "long"}
        if bad:
            raise ValueError(f"unknown caption lengths {sorted(bad)}; known: short, normal, long")
        if min(self.questions, self.detect, self.point) < 0:
            raise ValueError("questions, detect and point must be >= 0")
        if not (0.0 <= self.absent_share <= 1.0 and 0.0 <= self.prefix_share <= 1.0 and 0.0 <= self.margin < 0.5):
            raise ValueError("absent_share and prefix_share must be in [0, 1], margin in [0, 0.5)")
