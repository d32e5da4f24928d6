"""``detect_gaze`` (experimental in the reference): where a person looks, from an eye's position.

The prompt is the text "\\n\\nPoint:", the eye's x and y as encoded coordinates, then " gaze\\n\\n";
one point is decoded as ``point`` does, or none when the model ends at once. With
``prioritize_accuracy`` and a face box, 10 eye positions drawn in the face box are asked on the
image and, mirrored, on the mirrored image; outliers are dropped and the rest averaged.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import ImageOps

from .generation.engine import EncodedImage, TextRequest
from .generation.locate import locate
from .generation.sampling import SamplingSettings, SettingsError
from .image import load_image, to_rgb
from .prompts import REGION_REVISION
from .spatial import SpatialRefError, parse_ref

UNSTABLE_KEYS = ("prioritize_accuracy", "force_detect")
SETTINGS_KEYS = ("variant", "seed")
SAMPLES = 10  # eye positions per view with prioritize_accuracy; fewer detections in all gives None
NEIGHBOURS = 2


def gaze_request(md, encoded: EncodedImage, eye: Sequence[float], adapter=None) -> TextRequest:
    """The greedy gaze request for one eye position: prompt ids with the eye's two coordinate slots."""
    before, after = md.prompts().gaze()
    coord = md.config.tokenizer.coord_id
    prompt = [*before, coord, coord, *after]
    # the reference rounds the eye point to bfloat16 before encoding it
    rounded = torch.tensor(list(eye), dtype=torch.float32).to(torch.bfloat16).float().to(md.model.device)
    with torch.inference_mode():
        encoded_eye = md.model.region.encode_coordinate(rounded)
    slots = {len(before): encoded_eye[0], len(before) + 1: encoded_eye[1]}
    greedy = SamplingSettings(max_tokens=3, temperature=0.0, top_p=1.0)
    return TextRequest(encoded, prompt, greedy, slots=slots, adapter=adapter)


def detect_gaze(md, image, eye=None, face=None, unstable_settings: Mapping[str, Any] | None = None, settings=None):
    """``{"gaze": {"x", "y"} | None}`` (see the module's docstring)."""
    unstable = _checked(unstable_settings, UNSTABLE_KEYS, "unstable_settings")
    chosen = _checked(settings, SETTINGS_KEYS, "settings")
    if md.model.region is None:
        profile = md.config.profile
        raise NotImplementedError(
            f"the {profile} profile has no region model; detect_gaze needs revision {REGION_REVISION} or later"
        )
    seed = chosen.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise SettingsError(f"seed must be an integer, got {seed!r}")
    force = bool(unstable.get("force_detect", False))
    adapter = md.variants.adapter(chosen)
    if not unstable.get("prioritize_accuracy", False):
        if eye is None:
            raise SpatialRefError("eye is required: the (x, y) of an eye, normalised")
        point = parse_ref(eye, "eye", sizes=(2,))
        return {"gaze": _one(md, md.encode_image(image, chosen), point, force, adapter)}
    if face is None:
        raise SpatialRefError("prioritize_accuracy needs face: the face's box (x_min, y_min, x_max, y_max), normalised")
    x_min, y_min, x_max, y_max = parse_ref(face, "face", sizes=(4,))
    if isinstance(image, EncodedImage):
        raise ValueError("prioritize_accuracy needs the image itself (it is also asked mirrored), not an EncodedImage")
    rgb = to_rgb(load_image(image))
    draw = random.Random(seed)
    eyes = [(draw.uniform(x_min, x_max), draw.uniform(y_min, y_max)) for _ in range(SAMPLES)]
    found = [_one(md, md.encode_image(rgb, chosen), e, force, adapter) for e in eyes]
    mirrored = md.encode_image(ImageOps.mirror(rgb), chosen)
    for x, y in eyes:
        point = _one(md, mirrored, (1.0 - x, y), force, adapter)
        found.append(None if point is None else {"x": 1.0 - point["x"], "y": point["y"]})
    detections = [p for p in found if p is not None]
    if len(detections) < SAMPLES:
        return {"gaze": None}
    kept = without_outliers(detections)
    return {"gaze": {"x": statistics.fmean(p["x"] for p in kept), "y": statistics.fmean(p["y"] for p in kept)}}


def without_outliers(points: list[dict[str, float]]) -> list[dict[str, float]]:
    """The points whose mean distance to their 2 nearest neighbours is at most twice the median of it."""
    spread = []
    for index, p in enumerate(points):
        distances = sorted(
            ((p["x"] - q["x"]) ** 2 + (p["y"] - q["y"]) ** 2) ** 0.5 for j, q in enumerate(points) if j != index
        )
        spread.append(statistics.fmean(distances[:NEIGHBOURS]))
    limit = 2 * statistics.median(spread)
    return [p for p, s in zip(points, spread) if s <= limit]


def _one(md, encoded: EncodedImage, eye, force: bool, adapter) -> dict[str, float] | None:
    request = gaze_request(md, encoded, eye, adapter)
    eos = None if force else md.config.tokenizer.eos_id
    points = locate(
        md.engine,
        encoded,
        request.prompt,
        with_size=False,
        max_objects=1,
        eos_id=eos,
        slots=request.slots,
        adapter=adapter,
    )
    return points[0] if points else None


def _checked(values: Mapping[str, Any] | None, known: tuple[str, ...], name: str) -> dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise SettingsError(f"{name} must be a dict, got {type(values).__name__}")
    unknown = set(values) - set(known)
    if unknown:
        raise SettingsError(f"unknown {name} {sorted(unknown)}; known: {list(known)}")
    return dict(values)
