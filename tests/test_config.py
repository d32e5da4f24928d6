"""Config reading: Hugging Face and reference forms, profiles, derived geometry."""

from __future__ import annotations

import json

import pytest
from conftest import GOLDEN

from moonlet.checkpoints.config_json import config_from_json, config_to_dict
from moonlet.config import ConfigError, MoondreamConfig
from moonlet.profiles import PROFILES


def test_empty_hf_config_means_real_size_defaults():
    config = config_from_json({"model_type": "moondream1", "config": {}, "torch_dtype": "bfloat16"})
    assert config.profile == "2025-06-21" and config.dtype == "bfloat16"
    assert config.vision.grid_size == 27 and config.prefix_len == 730
    assert config.text.dim == 2048 and config.text.head_dim == 64 and config.text.rotary_dim == 32
    assert config.tokenizer.templates.query_prefix == (1, 15381, 2)
    assert config.vision.proj_in_dim == 2304


def test_golden_configs_agree_in_both_forms():
    hf = config_from_json(json.loads((GOLDEN / "model" / "config.json").read_text()))
    reference = config_from_json(json.loads((GOLDEN / "layout_a" / "config.json").read_text()))
    assert hf.text == reference.text and hf.vision == reference.vision and hf.tokenizer == reference.tokenizer
    assert hf.text.dim == 128 and hf.vision.enc_dim == 32


def test_geometry_is_derived():
    config = config_from_json({"config": {"vision": {"crop_size": 224, "enc_patch_size": 16, "proj_out_dim": 2048}}})
    assert config.vision.grid_size == 14 and config.prefix_len == 197


def test_prefix_attn_must_agree_with_geometry():
    with pytest.raises(ConfigError, match="prefix_attn=700"):
        config_from_json({"config": {"text": {"prefix_attn": 700}}})


def test_unknown_keys_and_forms_are_refused():
    with pytest.raises(ConfigError, match="unknown key text.width"):
        config_from_json({"config": {"text": {"width": 3}}})
    with pytest.raises(ConfigError, match="no known form"):
        config_from_json({"hello": 1})
    with pytest.raises(ConfigError, match="quantised"):
        config_from_json({"config": {"text": {"group_size": 128}}})
    with pytest.raises(ConfigError, match="unknown profile"):
        config_from_json({"config": {}}, profile="1999-01-01")


def test_inconsistent_sizes_are_refused():
    with pytest.raises(ConfigError, match="not divisible"):
        config_from_json({"config": {"text": {"n_heads": 5}}})
    with pytest.raises(ConfigError, match="proj_out_dim"):
        config_from_json({"config": {"text": {"dim": 1024, "n_heads": 16, "n_kv_heads": 16}}})


def test_config_dict_roundtrip():
    config = PROFILES["2025-06-21"]
    again = config_from_json({"config": config_to_dict(config)})
    assert again == config
    assert isinstance(again, MoondreamConfig)
