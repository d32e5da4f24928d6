"""Photo-like degradations of a finished picture: slight blur, Gaussian sensor noise, JPEG artefacts.

The choices are drawn from the scene's layout generator and kept in the ground truth (``Effects``),
so applying them is a pure function of the scene: the same seed gives the same bytes.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from .config import SceneConfig
from .scene import Effects


def sample_effects(rng: np.random.Generator, cfg: SceneConfig) -> Effects:
    """Which degradations a scene gets; a knob whose probability is 0 draws nothing."""
    blur = noise = 0.0
    noise_seed = jpeg = 0
    if cfg.blur_probability and rng.random() < cfg.blur_probability:
        blur = float(rng.uniform(*cfg.blur_radius_range))
    if cfg.noise_probability and rng.random() < cfg.noise_probability:
        noise = float(rng.uniform(*cfg.noise_sigma_range))
        noise_seed = int(rng.integers(2**31))
    if cfg.jpeg_probability and rng.random() < cfg.jpeg_probability:
        low, high = cfg.jpeg_quality_range
        jpeg = int(rng.integers(low, high + 1))
    return Effects(blur=blur, noise=noise, noise_seed=noise_seed, jpeg=jpeg)


def apply_effects(image: Image.Image, effects: Effects) -> Image.Image:
    """``image`` blurred, then noised, then JPEG-encoded and decoded, as ``effects`` says."""
    if effects.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(effects.blur))
    if effects.noise > 0:
        pixels = np.asarray(image, dtype=np.float32)
        grain = np.random.default_rng(effects.noise_seed).normal(0.0, effects.noise, pixels.shape)
        pixels = np.clip(np.rint(pixels + grain.astype(np.float32)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, "RGB")
    if effects.jpeg > 0:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=effects.jpeg)
        buf.seek(0)
        with Image.open(buf) as decoded:
            image = decoded.convert("RGB")
    return image
