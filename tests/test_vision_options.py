"""Vision options for small models trained from scratch: conv stem, CoordConv, patch LayerNorm,
fixed 2-D sin-cos positions. Their defaults leave every release's tower as it was."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import moonlet
from moonlet.checkpoints.save import save_pretrained
from moonlet.config import ConfigError
from moonlet.modeling.init import build_random
from moonlet.modeling.vision import coordinate_channels, sincos_table
from moonlet.profiles import PROFILES

NANO = PROFILES["moonlet-nano"]
ALL_ON = {
    "stem": "conv",
    "stem_channels": (8, 16),
    "stem_depth": 2,
    "enc_patch_size": 16,
    "crop_size": 64,
    "coord_channels": True,
    "patch_norm": True,
    "position_table": "sincos",
}


def nano_with(**vision) -> moonlet.MoondreamConfig:
    """moonlet-nano with every vision option at its default (SigLIP's), then ``vision`` applied."""
    plain = {
        "stem": "linear",
        "stem_channels": (),
        "stem_depth": 1,
        "enc_patch_size": 14,
        "crop_size": 140,
        "coord_channels": False,
        "patch_norm": False,
        "position_table": "learned",
    }
    return replace(NANO, vision=replace(NANO.vision, **(plain | vision)))


def test_defaults_add_no_tensors():
    names = set(build_random(nano_with()).state_dict())
    assert not any(".stem." in n or "patch_norm" in n or "pos_fixed" in n for n in names)


def test_sincos_table_rows_are_distinct_unit_scale_positions():
    table = sincos_table(6, 32)
    assert table.shape == (36, 32)
    assert table.abs().max() <= 1.0
    assert torch.allclose(table.pow(2).mean(), torch.tensor(0.5), atol=1e-6)  # sines and cosines: RMS 1/sqrt(2)
    distances = torch.cdist(table, table) + torch.eye(36) * 1e3
    assert distances.min() > 0.1  # no two patches share a position code
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_table(4, 30)


def test_coordinate_channels_span_the_image():
    out = coordinate_channels(torch.zeros(2, 3, 5, 7))
    assert out.shape == (2, 5, 5, 7)
    assert out[0, 3, 0, 0] == -1 and out[0, 3, 0, -1] == 1  # x across columns
    assert out[0, 4, 0, 0] == -1 and out[0, 4, -1, 0] == 1  # y down rows


def test_every_option_together_gives_the_patch_grid_and_trains():
    config = nano_with(**ALL_ON)
    model = build_random(config)
    assert config.vision.grid_size == 4 and config.vision.patch_dim == 16 * 4 * 4
    pixels = torch.randn(2, 3, 64, 64)
    features = model.vision(pixels)
    assert features.shape == (2, 16, config.vision.enc_dim)
    features.square().mean().backward()
    assert all(p.grad is not None for p in model.vision.stem.parameters())
    assert len(model.vision.stem.refine[1]) == 1  # stem_depth 2: one residual stride-1 conv per stage
    # the fixed table reaches the tokens: moving it changes the output
    before = model.vision(pixels).detach()
    model.vision.pos_fixed.mul_(0)
    assert not torch.allclose(before, model.vision(pixels))


def test_options_round_trip_through_config_json(tmp_path):
    from moonlet.checkpoints.loading import EMBEDDED_DIR, EMBEDDED_MODEL
    from moonlet.tokenizer import Tokenizer

    model = build_random(nano_with(**ALL_ON))
    tokenizer = Tokenizer.from_file(EMBEDDED_DIR / EMBEDDED_MODEL / "tokenizer.json")
    save_pretrained(moonlet.Moondream(model, tokenizer), tmp_path / "m")
    vision = json.loads((tmp_path / "m" / "config.json").read_text())["config"]["vision"]
    assert vision["stem"] == "conv" and vision["stem_channels"] == [8, 16] and vision["position_table"] == "sincos"
    assert vision["stem_depth"] == 2
    loaded = moonlet.load(tmp_path / "m", device="cpu", dtype="float32")
    assert loaded.config.vision == model.config.vision
    pixels = torch.randn(1, 3, 64, 64)
    assert torch.allclose(loaded.model.vision(pixels), model.vision(pixels), atol=1e-5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stem": "resnet"}, "vision.stem must be one of"),
        ({"stem": "conv"}, "stem_channels must be given"),
        ({"stem_channels": (8,)}, "stem_channels must be given"),
        ({"stem": "conv", "stem_channels": (8, 8, 8), "enc_patch_size": 14, "crop_size": 140}, "not a multiple"),
        ({"position_table": "rope"}, "position_table must be one of"),
        ({**ALL_ON, "stem_depth": 0}, "stem_depth must be"),
    ],
)
def test_bad_options_are_named(changes, message):
    with pytest.raises(ConfigError, match=message):
        nano_with(**changes).validate()


def test_a_config_written_before_the_options_loads_as_it_was():
    """moonlet-nano v2's config.json (frozen copy) predates the options; the profile now has them on."""
    from moonlet.checkpoints.config_json import config_from_json

    assert PROFILES["moonlet-nano"].vision.stem == "conv"
    old = config_from_json(json.loads((Path(__file__).parent / "fixtures" / "moonlet-nano-v2-config.json").read_text()))
    assert old.profile == "moonlet-nano"
    assert (old.vision.stem, old.vision.patch_norm, old.vision.position_table) == ("linear", False, "learned")
    assert (old.vision.crop_size, old.vision.enc_patch_size, old.prefix_len) == (140, 14, 101)
