"""Scene generation: determinism, independence of scene indices, and ground truth against pixels."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moonlet.data import SceneConfig, draw, make_example, render, sample_scene
from moonlet.data import fonts as fonts_module
from moonlet.data.config import SHAPES, SIZE_CLASSES
from moonlet.data.fonts import text_alpha
from moonlet.data.palette import COLOURS, delta_e, nearest_colour, to_lab
from moonlet.data.render import background_pixels
from moonlet.data.shapes import coverage, outline

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "moonlet"


def digest(example) -> str:
    h = hashlib.sha256(example.png)
    h.update(json.dumps(example.rows).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def scenes():
    """Sixty scenes of seed 5 with their clean pixels (before blur, noise and JPEG)."""
    out = []
    for i in range(60):
        scene = sample_scene(5, i)
        out.append((scene, np.asarray(draw(scene))))
    return out


def test_same_seed_same_bytes_and_rows():
    a, b = make_example(7, 3), make_example(7, 3)
    assert a.png == b.png
    assert a.rows == b.rows and a.rows


def test_different_seeds_or_indices_differ():
    base = make_example(7, 3)
    for other in (make_example(8, 3), make_example(7, 4)):
        assert other.png != base.png
        assert [r.get("caption") for r in other.rows] != [r.get("caption") for r in base.rows]


def test_scene_does_not_depend_on_order_or_neighbours():
    forward = [digest(make_example(11, i)) for i in range(4)]
    backward = [digest(make_example(11, i)) for i in reversed(range(4))][::-1]
    alone = digest(make_example(11, 2))
    assert forward == backward
    assert forward[2] == alone
    assert len(set(forward)) == 4


def test_scene_is_the_same_in_another_process():
    # A fresh interpreter with another hash seed; the stub parent package keeps torch out of it.
    code = (
        "import sys, types, hashlib, json\n"
        f"pkg = types.ModuleType('moonlet'); pkg.__path__ = [{str(PACKAGE_DIR)!r}]; sys.modules['moonlet'] = pkg\n"
        "from moonlet.data.generate import make_example\n"
        "e = make_example(11, 2)\n"
        "h = hashlib.sha256(e.png); h.update(json.dumps(e.rows).encode()); print(h.hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == digest(make_example(11, 2))


def test_object_counts_shapes_and_colours_within_limits(scenes):
    counts = [len(s.objects) for s, _ in scenes]
    assert min(counts) >= 1 and max(counts) <= 6
    assert len(set(counts)) >= 4  # the count varies
    shapes = {o.shape for s, _ in scenes for o in s.objects}
    colours = {o.colour for s, _ in scenes for o in s.objects}
    assert shapes == set(SHAPES)
    assert len(colours) >= 8 and colours <= set(COLOURS)
    assert {s.background.kind for s, _ in scenes} == {"flat", "gradient", "noise", "stripes"}
    assert {o.size for s, _ in scenes for o in s.objects} == set(SIZE_CLASSES)
    assert sum(bool(s.texts) for s, _ in scenes) >= 20


def test_points_and_box_centres_show_the_object_colour(scenes):
    # An outline's point is its geometric centre, in its hole: inside its box, on the bare
    # background or its own stroke, never on anything else.
    checked_boxes = outlines = 0
    for scene, pixels in scenes:
        bare = background_pixels(scene.background, scene.width, scene.height)
        for obj in scene.objects:
            x, y = obj.centre
            if obj.stroke:
                assert obj.box[0] <= x <= obj.box[2] and obj.box[1] <= y <= obj.box[3], (scene.index, obj)
                here = pixels[int(y), int(x)].astype(float)
                on_bg = np.abs(here - bare[int(y), int(x)]).max() <= 1
                assert on_bg or nearest_colour(here) == obj.colour, (scene.index, obj)
                outlines += 1
                continue
            assert nearest_colour(pixels[int(y), int(x)]) == obj.colour, (scene.index, obj)
            if obj.occlusion == 0:
                bx, by = (obj.box[0] + obj.box[2]) // 2, (obj.box[1] + obj.box[3]) // 2
                assert nearest_colour(pixels[by, bx]) == obj.colour, (scene.index, obj)
                checked_boxes += 1
    assert checked_boxes > 80 and outlines > 10


def test_boxes_are_tight_around_the_object(scenes):
    # Each edge row/column of an unoccluded object's box has a pixel at least half covered by the
    # object (nearer its colour than the bare background there); the box is in bounds, and its
    # normalised form is the pixel box over the image size.
    checked = 0
    for scene, pixels in scenes:
        bare = background_pixels(scene.background, scene.width, scene.height)
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box
            assert 0 <= x0 < x1 <= scene.width and 0 <= y0 < y1 <= scene.height
            assert scene.norm_box(obj.box) == pytest.approx([x0 / 256, y0 / 256, x1 / 256, y1 / 256], abs=1e-4)
            if obj.occlusion:
                continue
            region = pixels[y0:y1, x0:x1].astype(float)
            to_obj = np.linalg.norm(region - np.asarray(obj.rgb, float), axis=-1)
            to_bg = np.linalg.norm(region - bare[y0:y1, x0:x1], axis=-1)
            mine = to_obj <= to_bg + 2.0
            assert mine[0].any() and mine[-1].any() and mine[:, 0].any() and mine[:, -1].any(), (scene.index, obj)
            checked += 1
    assert checked > 100


def test_occlusion_is_limited_and_recorded(scenes):
    limit = SceneConfig().max_occlusion
    occluded = [o for s, _ in scenes for o in s.objects if o.occlusion > 0]
    assert occluded, "no overlaps in sixty scenes"
    for scene, _ in scenes:
        for i, obj in enumerate(scene.objects):
            assert obj.occlusion <= limit
            assert (obj.occlusion > 0) == bool(obj.occluded_by)
            assert all(j > i for j in obj.occluded_by)  # only later layers cover an object


def test_colours_contrast_with_the_background(scenes):
    cfg = SceneConfig()
    for scene, _ in scenes:
        for item in (*scene.objects, *scene.texts):
            for tone in scene.background.tones:
                assert delta_e(COLOURS[item.colour], tone) >= cfg.min_contrast
        for text in scene.texts:  # text is also lighter or darker than the background
            for tone in scene.background.tones:
                assert abs(to_lab(COLOURS[text.colour])[0] - to_lab(tone)[0]) >= cfg.min_text_lightness


def test_text_is_drawn_in_its_box_and_clear_of_shapes(scenes):
    seen = 0
    for scene, pixels in scenes:
        for text in scene.texts:
            x0, y0, x1, y1 = text.box
            region = pixels[y0:y1, x0:x1].reshape(-1, 3).astype(float)
            assert (np.linalg.norm(region - np.asarray(text.rgb), axis=1) < 30).sum() >= 10
            assert text.text.strip() and text.colour in COLOURS
            seen += 1
            ink = np.zeros((scene.height, scene.width), bool)
            ink[y0:y1, x0:x1] = text_alpha(text.text, text.font, text.size, text.angle) > 0
            for obj in scene.objects:  # text never covers a shape
                cov = coverage(outline(obj.shape, *obj.centre, obj.radius, obj.rotation), 4, obj.stroke)
                assert not (cov.full(scene.width, scene.height) > 0)[ink].any(), (scene.index, text)
    assert seen >= 20
    assert len({t.font for s, _ in scenes for t in s.texts}) >= 3


def test_image_size_is_configurable():
    cfg = SceneConfig(width=160, height=128)
    scene = sample_scene(0, 0, cfg)
    assert render(scene, cfg).size == (160, 128) == draw(scene, cfg).size
    assert all(o.box[2] <= 160 and o.box[3] <= 128 for o in scene.objects)


@pytest.mark.parametrize(
    "bad",
    [
        dict(max_objects=0),
        dict(shapes=("blob",)),
        dict(width=8),
        dict(max_occlusion=1.0),
        dict(outline_probability=1.5),
        dict(jpeg_probability=-0.1),
        dict(jpeg_quality_range=(90, 30)),
        dict(jpeg_quality_range=(30.0, 90.0)),
        dict(noise_sigma_range=(5.0,)),
        dict(blur_radius_range=(-1.0, 1.0)),
        dict(size_radii=((0.05, 0.07),) * 5),
        dict(size_weights=(0, 0, 0, 0, 0)),
        dict(size_weights=(1, 1, 1)),
        dict(outline_width_range=(0.03, 0.01)),
        dict(pure_background_probability=2.0),
    ],
)
def test_bad_scene_config_is_refused(bad):
    with pytest.raises(ValueError):
        SceneConfig(**bad)


def test_falls_back_to_pillow_font_without_installed_fonts(monkeypatch, tmp_path):
    monkeypatch.setattr(fonts_module, "FONT_DIRS", (tmp_path,))
    fonts_module._installed.cache_clear()
    fonts_module.available_fonts.cache_clear()
    try:
        assert fonts_module.available_fonts() == (fonts_module.DEFAULT_FONT,)
        cfg = SceneConfig(text_probability=1.0)
        scene = next(s for s in (sample_scene(0, i, cfg) for i in range(10)) if s.texts)
        assert scene.texts[0].font == fonts_module.DEFAULT_FONT
        assert render(scene, cfg).size == (256, 256)
    finally:
        fonts_module._installed.cache_clear()
        fonts_module.available_fonts.cache_clear()
