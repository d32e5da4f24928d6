"""Pixels of a scene: background, then objects in order, then text, alpha-blended; then the scene's
photo-like degradations (blur, noise, JPEG)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .config import SceneConfig
from .effects import apply_effects
from .fonts import text_alpha
from .scene import Background, Scene
from .shapes import Coverage, coverage, outline


def _direction(bg: Background, w: int, h: int) -> np.ndarray:
    a = np.radians(bg.angle)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs * np.float32(np.cos(a)) + ys * np.float32(np.sin(a))


def background_pixels(bg: Background, w: int, h: int) -> np.ndarray:
    """(h, w, 3) float32 background."""
    first = np.asarray(bg.tones[0], np.float32)
    if bg.kind == "flat":
        return np.broadcast_to(first, (h, w, 3)).copy()
    if bg.kind in ("gradient", "stripes"):
        second = np.asarray(bg.tones[1], np.float32)
        proj = _direction(bg, w, h)
        if bg.kind == "gradient":
            t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1.0)
        else:
            t = (np.floor(proj / (bg.period / 2.0)) % 2).astype(np.float32)
        return first + t[..., None] * (second - first)
    rng = np.random.default_rng(bg.noise_seed)
    coarse = rng.normal(0.0, bg.noise, (h // 16 + 2, w // 16 + 2)).astype(np.float32)
    coarse = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BILINEAR))
    fine = rng.normal(0.0, bg.noise, (h, w)).astype(np.float32)
    return first + (coarse + fine)[..., None]


def _blend(img: np.ndarray, cov: Coverage, rgb) -> None:
    h, w = cov.alpha.shape
    H, W = img.shape[:2]
    x0, y0 = max(cov.x0, 0), max(cov.y0, 0)
    x1, y1 = min(cov.x0 + w, W), min(cov.y0 + h, H)
    a = cov.alpha[y0 - cov.y0 : y1 - cov.y0, x0 - cov.x0 : x1 - cov.x0].astype(np.float32)[..., None] / 255.0
    region = img[y0:y1, x0:x1]
    img[y0:y1, x0:x1] = region * (1.0 - a) + np.asarray(rgb, np.float32) * a


def draw(scene: Scene, config: SceneConfig | None = None) -> Image.Image:
    """The clean RGB image of ``scene``, before degradations (what boxes and centres describe)."""
    cfg = config or SceneConfig()
    img = background_pixels(scene.background, scene.width, scene.height)
    for obj in scene.objects:
        pts = outline(obj.shape, obj.centre[0], obj.centre[1], obj.radius, obj.rotation)
        _blend(img, coverage(pts, cfg.supersample, obj.stroke), obj.rgb)
    for text in scene.texts:
        alpha = text_alpha(text.text, text.font, text.size, text.angle)
        _blend(img, Coverage(text.box[0], text.box[1], alpha), text.rgb)
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")


def render(scene: Scene, config: SceneConfig | None = None) -> Image.Image:
    """The RGB image of ``scene`` (a pure function of the scene and the supersampling)."""
    return apply_effects(draw(scene, config), scene.effects)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
