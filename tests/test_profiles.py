"""Further revisions as profiles of the same code, checked against the spec's worked examples."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import GOLDEN, GOLDEN_2024

import moonlet
from moonlet.checkpoints.config_json import config_from_json
from moonlet.modeling.region import RegionModel
from moonlet.profiles import PROFILES, profile_for_revision
from moonlet.prompts import PromptBuilder
from moonlet.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def byte_tokenizer():
    return Tokenizer.from_file(GOLDEN / "model" / "tokenizer.json")


def byte_ids(text: str) -> list[int]:
    return [1000 + b for b in text.encode()]


def test_revision_aliases():
    assert profile_for_revision("2024-05-08") == "2024-04-02"
    assert profile_for_revision("2025-04-14") == "2025-04-14"
    assert profile_for_revision("main") is None


@pytest.mark.parametrize("profile, kind", [("2025-01-09", "linear"), ("2025-03-27", "log"), ("2025-06-21", "log")])
def test_size_bins(profile, kind):
    region = RegionModel(PROFILES[profile].region)
    bins = torch.tensor([0, 511, 1023])
    values = region.size_value(bins).tolist()
    if kind == "linear":
        assert values == pytest.approx([0.0, 511 / 1024, 1023 / 1024])
    else:
        assert values == pytest.approx([2**-10, 2 ** (511 / 1023 * 10 - 10), 1.0])
    assert region.coordinate_value(torch.tensor([512])).item() == 0.5


def test_gpt2_era_templates(byte_tokenizer):
    early = PromptBuilder(PROFILES["2025-01-09"].tokenizer, byte_tokenizer)
    later = PromptBuilder(PROFILES["2025-03-27"].tokenizer, byte_tokenizer)
    assert early.query("What?") == [198, 198, 24361, 25, *byte_ids("What?"), 198, 198, 33706, 25]
    assert later.query("What?") == [198, 198, 24361, 25, *byte_ids(" What?"), 198, 198, 33706, 25]
    assert early.detect("face") == [198, 198, 47504, 25, *byte_ids("face"), 628]
    assert later.point("eye") == [198, 198, 12727, 25, *byte_ids(" eye"), 628]
    assert early.caption("short") == [198, 198, 16438, 8305, 25]
    assert early.stop_ids() == (50256,)
    assert PROFILES["2025-04-14"].generation.temperature == 0.5 and PROFILES["2025-03-27"].generation.temperature == 0


def test_starmie_templates(byte_tokenizer):
    builder = PromptBuilder(PROFILES["2025-06-21"].tokenizer, byte_tokenizer)
    assert builder.query("Hi") == [1, 15381, 2, *byte_ids("Hi"), 3, 3]
    assert builder.detect("cat") == [1, 7235, 476, 2, *byte_ids(" cat"), 3]
    assert builder.caption("long") == [1, 32708, 2, 4059, 3]


def test_2024_04_02_prompt_has_no_image_tags(byte_tokenizer):
    builder = PromptBuilder(PROFILES["2024-04-02"].tokenizer, byte_tokenizer)
    assert builder.image_open_ids() == []
    assert builder.query("Why?") == byte_ids("\n\nQuestion: Why?\n\nAnswer:")
    assert builder.stop_ids() == (50256,)
    assert PROFILES["2024-04-02"].vision.gelu == "tanh" and PROFILES["2024-04-02"].vision.layer_norm_eps == 1e-5


def test_revision_selects_the_profile_of_a_2024_checkpoint():
    path = GOLDEN_2024 / "model"
    model = moonlet.load(path, revision="2024-05-08", device="cpu")
    assert model.config.profile == "2024-04-02" and model.config.vision.gelu == "tanh"
    assert model.config.text.dim == 64  # sizes still come from config.json


def test_empty_hf_config_takes_the_revision_profile():
    config = config_from_json({"model_type": "moondream1", "config": {}}, profile="2025-01-09")
    assert config.region.size_bins == "linear" and config.tokenizer.eos_id == 50256


@pytest.mark.parametrize(
    "size, grid",
    [
        ((400, 300), (1, 1)),
        ((511, 200), (1, 1)),
        ((800, 800), (2, 2)),
        ((1000, 500), (1, 2)),
        ((500, 1000), (2, 1)),
        ((1200, 700), (1, 2)),
        ((600, 520), (1, 1)),
    ],  # 600x520: ratios tie, 364 < 392 picks (1, 1)
)
def test_2024_05_grid_size_choice(size, grid):
    """Below 512 px one tile; otherwise the closest aspect ratio among 1..2 tiles per side."""
    from moonlet.image import select_grid

    assert select_grid(*size, PROFILES["2024-05-20"].vision) == grid


def test_2024_05_grid_crops_and_features():
    import numpy as np
    from PIL import Image

    from moonlet.image import make_crops, resize_to_grid

    vision = PROFILES["2024-05-20"].vision
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 1100, 3), dtype=np.uint8))
    crops = make_crops(image, vision)
    assert crops.tiling == (1, 2) and crops.pixels.shape == (2, 378, 378, 3)
    resized = np.asarray(image.resize((756, 378), Image.Resampling.BICUBIC))
    assert np.array_equal(crops.pixels[1], resized[:, 378:])
    pixels = crops.normalized()
    assert pixels.shape == (3, 3, 378, 378)  # the global view is the whole image, downscaled
    expected_global = torch.nn.functional.interpolate(
        pixels[1:].permute(1, 2, 0, 3).reshape(1, 3, 378, 756), size=(378, 378), mode="bilinear"
    )
    assert torch.allclose(pixels[0], expected_global[0], atol=1e-6)
    grid = torch.randn(27, 54, 4)
    assert resize_to_grid(grid, 27).shape == (27, 27, 4)
    assert torch.equal(resize_to_grid(grid[:, :27], 27), grid[:, :27])
    assert PROFILES["2024-05-20"].vision.proj_in_dim == 2 * vision.enc_dim


def test_grid_profile_runs_end_to_end_on_a_small_model():
    from moonlet.config import TextConfig, VisionConfig
    from moonlet.modeling.init import build_random

    config = replace(
        PROFILES["2024-05-20"],
        text=TextConfig(
            dim=64, ff_dim=64, n_layers=1, n_heads=1, n_kv_heads=1, vocab_size=51200, prefix_bidirectional=False
        ),
        vision=VisionConfig(
            enc_dim=16,
            enc_n_layers=1,
            enc_ff_dim=16,
            enc_n_heads=1,
            proj_out_dim=64,
            proj_inner_dim=32,
            gelu="tanh",
            crop_scheme="grid",
            resample="bicubic",
        ),
    )
    model = build_random(config)
    from PIL import Image

    embedding = model.image_embedding(model.crops(Image.new("RGB", (800, 800), (10, 200, 30))))
    assert embedding.shape == (729, 64)


def test_2024_08_26_region_tensors_are_skipped(tmp_path):
    """That release carries an unused early region model; its profile has none and skips it."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    source = GOLDEN_2024 / "model"
    with safe_open(str(source / "model.safetensors"), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["region_model.position_features"] = torch.zeros(128, 2)
    tensors["region_model.confidence_decoder.weight"] = torch.zeros(1, 64)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(source / name, tmp_path / name)
    model = moonlet.load(tmp_path, revision="2024-03-13", device="cpu")
    assert model.model.region is None
