"""Image loading and preprocessing: RGB conversion, crop tiling, normalisation.

Crops are produced as uint8 arrays exactly as Pillow resamples them; normalisation to [-1, 1]
happens in float32 afterwards. Everything is derived from ``VisionConfig``.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.nn import functional as F

from .config import VisionConfig

ImageInput = Image.Image | str | os.PathLike | bytes | np.ndarray

RESAMPLE_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}


class ImageError(ValueError):
    """An input that cannot be read as an image."""


class ImageTooLargeError(ImageError):
    """An image over the pixel limit, refused before decoding."""


DEFAULT_MAX_PIXELS = 64_000_000  # width × height; checked from the header, before decoding


def max_pixels() -> int:
    """The decompression-bomb limit: ``MOONLET_MAX_IMAGE_PIXELS`` or 64 million pixels."""
    return int(os.environ.get("MOONLET_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS))


def check_pixels(width: int, height: int, limit: int | None = None) -> None:
    limit = limit or max_pixels()
    if width * height > limit:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {limit} "
            "(set MOONLET_MAX_IMAGE_PIXELS, or the server's --max-image-pixels, to raise it)"
        )


def load_image(image: ImageInput, max_pixels: int | None = None) -> Image.Image:
    """Open a PIL image, a path, encoded bytes or an (H, W[, C]) uint8 array.

    Encoded images over ``max_pixels`` (default: ``MOONLET_MAX_IMAGE_PIXELS`` or 64 million)
    are refused from their header, before decoding."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ImageError(f"image file not found: {path}")
        image = path.read_bytes()
    if isinstance(image, (bytes, bytearray, memoryview)):
        if not image:
            raise ImageError("image bytes are empty")
        try:
            opened = Image.open(io.BytesIO(bytes(image)))
            check_pixels(*opened.size, max_pixels)  # from the header: refuse bombs before decoding
            opened.load()  # the first frame of an animation
        except ImageError:
            raise
        except Image.DecompressionBombError as exc:  # Pillow's own check, at twice Image.MAX_IMAGE_PIXELS
            raise ImageTooLargeError(f"image is over the limit of Pillow's decompression-bomb check: {exc}") from None
        except Exception as exc:  # Pillow raises many types for bad data
            reason = "not a recognised image format" if "cannot identify" in str(exc) else str(exc)
            raise ImageError(f"cannot decode image bytes: {reason}") from None
        return opened
    if isinstance(image, np.ndarray):
        return _image_from_array(image)
    raise ImageError(f"expected a PIL image, a path, image bytes or a numpy array, got {type(image).__name__}")


def _image_from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageError(f"a numpy image must be (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def to_rgb(image: Image.Image, apply_exif: bool = True) -> Image.Image:
    """Upright RGB image; alpha is dropped (not composited), as the reference does.

    16-bit and float modes are scaled to 8 bits rather than clipped; palette, grey, CMYK and
    YCbCr modes go through Pillow's conversions.
    """
    if apply_exif:
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def normalize(pixels: np.ndarray) -> torch.Tensor:
    """(n, H, W, 3) uint8 → (n, 3, H, W) float32 in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
    return (x / 255.0 - 0.5) / 0.5


@dataclass(frozen=True)
class Crops:
    """The crops of one image: (n, crop, crop, 3) uint8, global crop first, then tiles row-major.

    Under the "grid" scheme the global crop is not stored: it is the whole resized image
    (``full``), downscaled after normalisation, as that revision did.
    """

    pixels: np.ndarray
    tiling: tuple[int, int]  # (rows, cols) of local tiles; (0, 0) when the scheme has none
    full: np.ndarray | None = None

    def normalized(self) -> torch.Tensor:
        """(n, 3, crop, crop) float32 in [-1, 1]."""
        crops = normalize(self.pixels)
        if self.full is None:
            return crops
        size = crops.shape[-2:]
        global_view = F.interpolate(normalize(self.full[None]), size=size, mode="bilinear", align_corners=False)
        return torch.cat((global_view, crops))


def select_tiling(height: int, width: int, window: int, max_crops: int) -> tuple[int, int]:
    """Rows and columns of local tiles for an image of usable size ``height`` × ``width``."""
    if height <= window or width <= window:
        return 1, 1
    min_h = math.ceil(height / window)
    min_w = math.ceil(width / window)
    if min_h * min_w > max_crops:
        ratio = math.sqrt(max_crops / (min_h * min_w))
        return max(1, math.floor(min_h * ratio)), max(1, math.floor(min_w * ratio))
    rows = max(math.floor(math.sqrt(max_crops * height / width)), min_h)
    cols = max(math.floor(math.sqrt(max_crops * width / height)), min_w)
    if rows * cols > max_crops:
        if cols > rows:
            cols = math.floor(max_crops / rows)
        else:
            rows = math.floor(max_crops / cols)
    return max(1, rows), max(1, cols)


def overlap_crops(image: Image.Image, config: VisionConfig) -> Crops:
    """Global crop plus overlapping tiles whose margins are dropped again after encoding."""
    crop = config.crop_size
    margin_px = config.overlap_margin * config.enc_patch_size
    window = crop - 2 * margin_px
    resample = RESAMPLE_FILTERS[config.resample]
    width, height = image.size
    rows, cols = select_tiling(height - 2 * margin_px, width - 2 * margin_px, window, config.max_crops)
    # Stretch (no letterbox) so that the tiles cover the image exactly.
    tiled = np.asarray(image.resize((cols * window + 2 * margin_px, rows * window + 2 * margin_px), resample))
    global_crop = np.asarray(image.resize((crop, crop), resample))
    crops = [global_crop]
    for i in range(rows):
        for j in range(cols):
            crops.append(tiled[i * window : i * window + crop, j * window : j * window + crop])
    return Crops(np.stack(crops), (rows, cols))


def single_crop(image: Image.Image, config: VisionConfig) -> Crops:
    """One crop: the whole image stretched to crop × crop."""
    size = (config.crop_size, config.crop_size)
    return Crops(np.array(image.resize(size, RESAMPLE_FILTERS[config.resample]))[None], (0, 0))


def select_grid(width: int, height: int, config: VisionConfig) -> tuple[int, int]:
    """(rows, cols) of whole crops for the "grid" scheme.

    Among 1..grid_max tiles per side, the shape closest in aspect ratio wins; ties go to the
    smaller |h − W| + |w − H| (height compared with width: the quirk of the 2024 code).
    """
    if max(width, height) < config.grid_min_side:
        return 1, 1
    crop = config.crop_size
    shapes = [(r, c) for r in range(1, config.grid_max + 1) for c in range(1, config.grid_max + 1)]

    def cost(shape):
        h, w = shape[0] * crop, shape[1] * crop
        return abs(w / h - width / height), abs(h - width) + abs(w - height)

    return min(shapes, key=cost)


def grid_crops(image: Image.Image, config: VisionConfig) -> Crops:
    """Resize to rows × cols whole crops; tiles are the crops, the global view is the whole."""
    rows, cols = select_grid(image.width, image.height, config)
    crop = config.crop_size
    full = np.array(image.resize((cols * crop, rows * crop), RESAMPLE_FILTERS[config.resample]))
    tiles = [full[i * crop : (i + 1) * crop, j * crop : (j + 1) * crop] for i in range(rows) for j in range(cols)]
    return Crops(np.stack(tiles), (rows, cols), full=full)


CROP_FUNCTIONS = {"overlap": overlap_crops, "single": single_crop, "grid": grid_crops}


def make_crops(image: ImageInput, config: VisionConfig) -> Crops:
    """Load, convert to RGB and cut ``image`` into crops following the configured scheme."""
    rgb = to_rgb(load_image(image))
    if rgb.width < 1 or rgb.height < 1:
        raise ImageError(f"image has no pixels ({rgb.width}x{rgb.height})")
    return CROP_FUNCTIONS[config.crop_scheme](rgb, config)


def reconstruct_from_crops(tiles: torch.Tensor, tiling: tuple[int, int], margin: int) -> torch.Tensor:
    """Stitch per-tile feature grids into one seamless grid.

    tiles: (rows·cols, g, g, C) → (rows·(g − 2m) + 2m, cols·(g − 2m) + 2m, C). A tile keeps its
    margin only on the sides that touch the image border, so every cell comes from one tile.
    """
    rows, cols = tiling
    n, grid, _, channels = tiles.shape
    step = grid - 2 * margin
    out = tiles.new_zeros(rows * step + 2 * margin, cols * step + 2 * margin, channels)
    for ty in range(rows):
        for tx in range(cols):
            tile = tiles[ty * cols + tx]
            y0 = 0 if ty == 0 else margin
            y1 = grid if ty == rows - 1 else grid - margin
            x0 = 0 if tx == 0 else margin
            x1 = grid if tx == cols - 1 else grid - margin
            out[ty * step + y0 : ty * step + y1, tx * step + x0 : tx * step + x1] = tile[y0:y1, x0:x1]
    return out


def resize_to_grid(features: torch.Tensor, grid: int) -> torch.Tensor:
    """(H, W, C) → (grid, grid, C) by bilinear interpolation (the 2024 revisions' rule)."""
    resized = F.interpolate(features.permute(2, 0, 1)[None], size=(grid, grid), mode="bilinear", align_corners=False)
    return resized[0].permute(1, 2, 0)


def pool_to_grid(features: torch.Tensor, grid: int) -> torch.Tensor:
    """(H, W, C) → (grid, grid, C) with adaptive average pooling per channel."""
    pooled = torch.nn.functional.adaptive_avg_pool2d(features.permute(2, 0, 1), (grid, grid))
    return pooled.permute(1, 2, 0)
