"""Further revisions as profiles of the same code, checked against the spec's worked examples."""

from __future__ import annotations

import pytest
import torch

import moonlet
from moonlet.profiles import PROFILES, config_from_json, profile_for_revision
from moonlet.prompts import PromptBuilder
from moonlet.region import RegionModel
from moonlet.tokenizer import Tokenizer

from conftest import GOLDEN, SHARED


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
    path = SHARED / "golden" / "md2-2024-03-13-tiny" / "model"
    if not path.is_dir():
        pytest.skip("2024 golden set not found")
    model = moonlet.load(path, revision="2024-05-08", device="cpu")
    assert model.config.profile == "2024-04-02" and model.config.vision.gelu == "tanh"
    assert model.config.text.dim == 64  # sizes still come from config.json


def test_empty_hf_config_takes_the_revision_profile():
    config = config_from_json({"model_type": "moondream1", "config": {}}, profile="2025-01-09")
    assert config.region.size_bins == "linear" and config.tokenizer.eos_id == 50256
