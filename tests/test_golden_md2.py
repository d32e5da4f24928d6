"""Parity with the reference implementation's outputs on the tiny golden checkpoint (both layouts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import GOLDEN, golden_cases

CASES = golden_cases()
IDS = [c["image"] for c in CASES]
GREEDY = {"temperature": 0, "max_tokens": 12}


@pytest.fixture(params=CASES, ids=IDS)
def case(request):
    data = dict(request.param)
    data["path"] = GOLDEN / "cases" / data["image"]
    data["expected"] = np.load(GOLDEN / "cases" / data["image"].replace(".png", "_expected.npz"))
    return data


def test_sampling_settings_are_what_the_cases_assume():
    recorded = json.loads((GOLDEN / "cases" / "expected.json").read_text())["sampling"]
    assert recorded == GREEDY


def test_crops_exact(golden_model, case):
    crops = golden_model.model.crops(case["path"])
    assert crops.tiling == tuple(case["expected"]["tiling"]) == tuple(case["tiling"])
    assert crops.pixels.shape == case["expected"]["crops"].shape
    assert np.array_equal(crops.pixels, case["expected"]["crops"])


def test_image_embedding(golden_model, case):
    embedding = golden_model.encode_image(case["path"]).embedding
    expected = torch.from_numpy(case["expected"]["image_embedding"])
    assert embedding.shape == expected.shape
    assert (embedding - expected).abs().max().item() < 1e-3


def test_query_first_token_logits(golden_model, case):
    prompt = golden_model.prompts().query(case["question"])
    assert prompt == case["query_prompt_ids"]
    logits = golden_model.first_token_logits(case["path"], prompt)
    expected = torch.from_numpy(case["expected"]["query_logits"][0])
    assert (logits - expected).abs().max().item() < 1e-3


def test_answer_ids(golden_model, case):
    from tokenizers import Tokenizer

    injected = Tokenizer.from_file(str(GOLDEN / "model" / "tokenizer.json"))
    tokenizer = golden_model.tokenizer
    answer = golden_model.query(case["path"], case["question"], settings=GREEDY, tokenizer=injected)["answer"]
    assert answer == tokenizer.decode(case["answer_ids"])
    request = golden_model.text_request(
        golden_model.encode_image(case["path"]), case["query_prompt_ids"], golden_model.sampling(GREEDY)
    )
    assert golden_model.engine.generate([request])[0] == case["answer_ids"]


@pytest.mark.parametrize("length", ["short", "normal"])
def test_caption_ids(golden_model, case, length):
    expected_ids = case[f"caption_{length}_ids"]
    caption = golden_model.caption(case["path"], length=length, settings=GREEDY)["caption"]
    assert caption == golden_model.tokenizer.decode(expected_ids)
    request = golden_model.text_request(
        golden_model.encode_image(case["path"]),
        golden_model.prompts().caption(length),
        golden_model.sampling(GREEDY),
    )
    assert golden_model.engine.generate([request])[0] == expected_ids


def test_detect(golden_model, case):
    objects = golden_model.detect(case["path"], case["detect_object"], settings={"max_objects": 3})["objects"]
    assert len(objects) == len(case["objects"])
    for got, want in zip(objects, case["objects"]):
        assert set(got) == {"x_min", "y_min", "x_max", "y_max"}
        for key in want:
            assert got[key] == pytest.approx(want[key], abs=1e-4)


def test_point(golden_model, case):
    points = golden_model.point(case["path"], case["point_object"], settings={"max_objects": 3})["points"]
    assert len(points) == len(case["points"])
    for got, want in zip(points, case["points"]):
        assert got["x"] == pytest.approx(want["x"], abs=1e-4)
        assert got["y"] == pytest.approx(want["y"], abs=1e-4)
