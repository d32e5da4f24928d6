"""Preprocessing: tiling choice, crop geometry, stitching, pooling and input modes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from moonlet.config import VisionConfig
from moonlet.image import (
    ImageError,
    load_image,
    make_crops,
    pool_to_grid,
    reconstruct_from_crops,
    select_tiling,
    to_rgb,
)

REAL = VisionConfig()


@pytest.mark.parametrize(
    "size, tiling, resized, stitched",
    [
        ((512, 512), (3, 3), (910, 910), (65, 65)),
        ((451, 300), (1, 1), (378, 378), (27, 27)),
        ((900, 400), (2, 5), (1442, 644), (46, 103)),
        ((90, 60), (1, 1), (378, 378), (27, 27)),
        ((1920, 1080), (2, 4), (1176, 644), (46, 84)),
        ((3000, 400), (1, 8), (2240, 378), (27, 160)),
    ],
)
def test_spec_worked_examples(size, tiling, resized, stitched):
    """The spec's table: tiling, resized size (W×H) and stitched grid (H×W)."""
    width, height = size
    margin = REAL.overlap_margin * REAL.enc_patch_size
    window = REAL.crop_size - 2 * margin
    got = select_tiling(height - 2 * margin, width - 2 * margin, window, REAL.max_crops)
    assert got == tiling
    rows, cols = got
    assert (cols * window + 2 * margin, rows * window + 2 * margin) == resized
    step = REAL.grid_size - 2 * REAL.overlap_margin
    assert (rows * step + 2 * REAL.overlap_margin, cols * step + 2 * REAL.overlap_margin) == stitched


def test_crops_cover_the_image_and_global_comes_first():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 900, 3), dtype=np.uint8))
    crops = make_crops(image, REAL)
    assert crops.tiling == (2, 5)
    assert crops.pixels.shape == (11, 378, 378, 3)
    resized = np.asarray(image.resize((1442, 644), Image.Resampling.LANCZOS))
    assert np.array_equal(crops.pixels[0], np.asarray(image.resize((378, 378), Image.Resampling.LANCZOS)))
    assert np.array_equal(crops.pixels[-1], resized[644 - 378 :, 1442 - 378 :])  # last tile ends at the edge
    normalized = crops.normalized()
    assert normalized.shape == (11, 3, 378, 378) and normalized.min() >= -1 and normalized.max() <= 1


def test_reconstruct_takes_every_cell_from_exactly_one_tile():
    grid, margin, rows, cols = 7, 2, 2, 3
    tiles = torch.zeros(rows * cols, grid, grid, 1)
    for index in range(rows * cols):
        tiles[index] = index + 1
    out = reconstruct_from_crops(tiles, (rows, cols), margin)
    step = grid - 2 * margin
    assert out.shape == (rows * step + 2 * margin, cols * step + 2 * margin, 1)
    assert (out > 0).all()
    assert out[0, 0, 0] == 1 and out[-1, -1, 0] == rows * cols
    assert out[margin + step, 0, 0] == 1 + cols  # first kept row of the second tile row


def test_pool_to_grid_is_identity_on_grid_and_averages_otherwise():
    x = torch.randn(27, 27, 4)
    assert torch.equal(pool_to_grid(x, 27), x)
    y = torch.arange(46 * 4, dtype=torch.float32).view(46, 4, 1).expand(46, 4, 2)
    pooled = pool_to_grid(y, 2)
    assert pooled.shape == (2, 2, 2)
    assert pooled[0, 0, 0] == pytest.approx(y[:23, :2, 0].mean().item())


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "1", "P", "CMYK", "YCbCr", "I;16", "I", "F", "RGB"])
def test_every_mode_becomes_rgb(mode):
    base = Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    if mode == "I;16":
        image = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
        assert image.mode == "I;16"
    else:
        image = base.convert(mode)
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (30, 20)


def test_sixteen_bit_is_scaled_not_clipped():
    grey = np.full((4, 4), 32768, dtype=np.uint16)
    rgb = np.asarray(to_rgb(Image.fromarray(grey)))
    assert 120 <= rgb[0, 0, 0] <= 135  # half of full scale, not saturated white


def test_alpha_is_dropped_not_composited():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 1] = 160  # hidden green under full transparency
    rgb = np.asarray(to_rgb(Image.fromarray(rgba, "RGBA")))
    assert (rgb[..., 1] == 160).all()


def test_palette_with_transparency():
    image = Image.new("P", (5, 5), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.info["transparency"] = 0
    assert np.asarray(to_rgb(image))[0, 0].tolist() == [10, 200, 30]


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    upright = to_rgb(load_image(buffer.getvalue()))
    assert upright.size == (20, 40)


def test_inputs_path_bytes_array(tmp_path):
    array = np.random.default_rng(2).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(array).save(path)
    for source in (path, str(path), path.read_bytes(), array, Image.open(path)):
        assert np.array_equal(np.asarray(to_rgb(load_image(source))), array)


@pytest.mark.parametrize(
    "bad, message", [(b"", "empty"), (b"not an image", "cannot decode"), (42, "expected a PIL image")]
)
def test_bad_inputs_are_named(bad, message):
    with pytest.raises(ImageError, match=message):
        load_image(bad)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.png")


def test_odd_sizes_work():
    for size in [(1, 1), (1, 4000), (4000, 1)]:
        crops = make_crops(Image.new("RGB", size), REAL)
        assert crops.pixels.shape[1:] == (378, 378, 3)


def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
    monkeypatch.setenv("MOONLET_MAX_IMAGE_PIXELS", "10000")
    buffer = io.BytesIO()
    Image.new("L", (200, 100)).save(buffer, format="PNG")
    with pytest.raises(ImageError, match="200x100 = 20000 pixels, over the limit of 10000"):
        load_image(buffer.getvalue())


def test_truncated_and_disguised_files():
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, format="JPEG")
    with pytest.raises(ImageError):
        load_image(buffer.getvalue()[:200])
    with pytest.raises(ImageError, match="not a recognised image format"):
        load_image(b"<svg xmlns='http://www.w3.org/2000/svg'><rect width='10' height='10'/></svg>")


def test_animated_gif_gives_the_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(to_rgb(load_image(buffer.getvalue())))[0, 0].tolist() == [255, 0, 0]
