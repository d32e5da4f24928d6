"""Frozen configurations for scene generation and annotation."""

from __future__ import annotations

from dataclasses import dataclass

from .facts import DIRECTIONS
from .questions import QUESTION_TYPES

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "heart")
SIZE_CLASSES = ("tiny", "small", "medium", "large", "huge")
BACKGROUND_KINDS = ("flat", "gradient", "noise", "stripes")


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def _check_range(name: str, value: tuple, low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max <= {high}, got {value!r}")


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are laid out and drawn. Radii, stroke widths and font sizes are fractions of the
    shorter side; probabilities are per scene unless they say per object."""

    width: int = 256
    height: int = 256
    min_objects: int = 1
    max_objects: int = 6
    shapes: tuple[str, ...] = SHAPES
    # Per size class (SIZE_CLASSES): (min, max) radius as a fraction of min(width, height). The gaps
    # between classes keep the size words apart; a weight of 0 turns a class off.
    size_radii: tuple[tuple[float, float], ...] = (
        (0.02, 0.03),
        (0.045, 0.07),
        (0.085, 0.11),
        (0.13, 0.17),
        (0.2, 0.25),
    )
    size_weights: tuple[float, ...] = (0.12, 0.25, 0.28, 0.2, 0.15)
    background_kinds: tuple[str, ...] = BACKGROUND_KINDS
    background_weights: tuple[float, ...] = (0.55, 0.15, 0.15, 0.15)
    pure_background_probability: float = 0.35  # a flat background is pure white (light) or black (dark)
    max_occlusion: float = 0.3  # largest share of an object's area later layers may cover
    min_contrast: float = 35.0  # CIE76 delta E between an object colour and every background tone
    min_text_lightness: float = 30.0  # text also differs from the background by this much in L*
    colour_jitter: int = 10  # per-channel uniform jitter on named colours
    flat_colour_probability: float = 0.35  # per object and text: a standard value of its colour, no jitter
    outline_probability: float = 0.25  # per object: drawn as a stroke only, not filled
    outline_width_range: tuple[float, float] = (0.006, 0.03)  # stroke width (at least 1 px, at most radius/3)
    supersample: int = 4  # shape edges are drawn this much larger, then box-filtered
    text_probability: float = 0.6
    fonts: tuple[str, ...] = ()  # font names or paths; empty: every font found here
    font_size_range: tuple[float, float] = (0.075, 0.13)
    max_text_angle: float = 15.0  # degrees, either way
    placement_tries: int = 40
    # Photo-like degradations of the finished picture, in this order: blur, sensor noise, JPEG.
    blur_probability: float = 0.15
    blur_radius_range: tuple[float, float] = (0.3, 1.0)  # Gaussian blur radius in pixels
    noise_probability: float = 0.2
    noise_sigma_range: tuple[float, float] = (2.0, 10.0)  # Gaussian sensor noise, 0..255 scale
    jpeg_probability: float = 0.3
    jpeg_quality_range: tuple[int, int] = (30, 90)  # encoded and decoded again with Pillow

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
        self._check_sizes()
        if not 0.0 <= self.max_occlusion < 1.0:
            raise ValueError("max_occlusion must be in [0, 1)")
        if self.supersample < 1:
            raise ValueError("supersample must be >= 1")
        for name in (
            "pure_background_probability",
            "flat_colour_probability",
            "outline_probability",
            "text_probability",
            "blur_probability",
            "noise_probability",
            "jpeg_probability",
        ):
            _check_share(name, getattr(self, name))
        _check_range("outline_width_range", self.outline_width_range, 0.0, 0.5)
        _check_range("blur_radius_range", self.blur_radius_range, 0.0, 10.0)
        _check_range("noise_sigma_range", self.noise_sigma_range, 0.0, 128.0)
        _check_range("jpeg_quality_range", self.jpeg_quality_range, 1, 95)
        if not all(isinstance(q, int) for q in self.jpeg_quality_range):
            raise ValueError(f"jpeg_quality_range must hold integers, got {self.jpeg_quality_range!r}")

    def _check_sizes(self) -> None:
        if len(self.size_radii) != len(SIZE_CLASSES) or len(self.size_weights) != len(SIZE_CLASSES):
            raise ValueError(f"size_radii and size_weights need one entry per size class ({', '.join(SIZE_CLASSES)})")
        previous = 0.0
        for name, radii in zip(SIZE_CLASSES, self.size_radii):
            _check_range(f"size_radii[{name!r}]", radii, 0.0, 0.5)
            if radii[0] <= 0.0 or radii[0] < previous:
                raise ValueError(f"size_radii must be positive and increase without overlapping; {name!r} is {radii!r}")
            previous = radii[1]
        if min(self.size_weights) < 0 or sum(self.size_weights) <= 0:
            raise ValueError("size_weights must be non-negative with a positive sum")

    @classmethod
    def version1(cls, **overrides) -> SceneConfig:
        """The settings of generator version 1: for a seed it draws the same scenes, byte for byte
        (three size classes, no pure backgrounds, flat colours, outlines or degradations, DejaVu fonts)."""
        from .fonts import version1_fonts

        settings = dict(
            size_radii=((0.02, 0.03), (0.05, 0.07), (0.085, 0.11), (0.13, 0.16), (0.2, 0.25)),
            size_weights=(0.0, 0.35, 0.4, 0.25, 0.0),
            background_weights=(0.3, 0.25, 0.25, 0.2),
            pure_background_probability=0.0,
            flat_colour_probability=0.0,
            outline_probability=0.0,
            blur_probability=0.0,
            noise_probability=0.0,
            jpeg_probability=0.0,
            fonts=version1_fonts(),
        )
        return cls(**{**settings, **overrides})


@dataclass(frozen=True)
class AnnotationConfig:
    """How many rows of each kind one scene yields."""

    caption_lengths: tuple[str, ...] = ("short", "normal", "long")
    questions: int = 10
    detect: int = 2
    point: int = 2
    absent_share: float = 0.25  # share of questions/targets about things not in the scene
    prefix_share: float = 0.55  # share of questions given a lead-in phrase
    casual_share: float = 0.1  # share of questions typed casually: lower-case start, no final mark
    margin: float = 0.06  # normalised distance below which left/right/above/below is ambiguous
    # what questions ask: their types (moonlet.data.questions.QUESTION_TYPES) and the spatial
    # relations of the position, relative_object and count_relative types; fewer for a curriculum
    question_types: tuple[str, ...] = QUESTION_TYPES
    relations: tuple[str, ...] = DIRECTIONS

    def __post_init__(self) -> None:
        bad = set(self.caption_lengths) - {"short", "normal", "long"}
        if bad:
            raise ValueError(f"unknown caption lengths {sorted(bad)}; known: short, normal, long")
        for name, known in (("question_types", QUESTION_TYPES), ("relations", DIRECTIONS)):
            chosen = getattr(self, name)
            unknown = [v for v in chosen if v not in known]
            if unknown or not chosen:
                raise ValueError(f"{name} {list(chosen)} must be one or more of: {', '.join(known)}")
        if min(self.questions, self.detect, self.point) < 0:
            raise ValueError("questions, detect and point must be >= 0")
        for name in ("absent_share", "prefix_share", "casual_share"):
            _check_share(name, getattr(self, name))
        if not 0.0 <= self.margin < 0.5:
            raise ValueError("margin must be in [0, 0.5)")
