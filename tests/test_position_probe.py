"""The position probe: its questions, its packed pass against the engine, its read-outs."""

from __future__ import annotations

import numpy as np
import pytest

import moonlet
from moonlet.checkpoints.loading import EMBEDDED_DIR, EMBEDDED_MODEL, load_model
from moonlet.data.config import AnnotationConfig, SceneConfig
from moonlet.data.shards import generate_dataset
from moonlet.prompts import PromptBuilder
from moonlet.train.dense import read_truth
from moonlet.train.position_probe import _name_end, collect, format_report, position_questions, r_squared, report


def _object(colour, shape, x, y):
    return {"colour": colour, "shape": shape, "point_norm": [x, y]}


def test_questions_cover_every_settled_pair_and_direction():
    scene = {"objects": [_object("red", "star", 0.2, 0.3), _object("blue", "circle", 0.7, 0.32)]}
    questions = position_questions(scene, margin=0.05)
    # the y gap (0.02) is within the margin: only left/right are settled, for both orders
    assert sorted((q.a, q.direction, q.answer) for q in questions) == [
        (0, "left", True),
        (0, "right", False),
        (1, "left", False),
        (1, "right", True),
    ]
    assert questions[0].text == "Is the red star left of the blue circle?"


def test_questions_skip_objects_their_name_does_not_pick_out():
    scene = {
        "objects": [
            _object("red", "star", 0.1, 0.1),
            _object("red", "star", 0.9, 0.9),
            _object("blue", "circle", 0.5, 0.9),
        ]
    }
    assert position_questions(scene) == []


def test_name_end_points_at_the_last_token_of_each_name():
    net, tokenizer, _ = load_model(EMBEDDED_DIR / EMBEDDED_MODEL, dtype="float32")
    prompt = PromptBuilder(net.config.tokenizer, tokenizer).query("Is the red hexagon above the green star?")
    a_end = _name_end(tokenizer, prompt, "Is the red hexagon above the green star?", "red hexagon")
    b_end = _name_end(tokenizer, prompt, "Is the red hexagon above the green star?", "green star")
    assert tokenizer.decode(prompt[: a_end + 1]).endswith("red hexagon")
    assert tokenizer.decode(prompt[: b_end + 1]).endswith("green star")


def test_r_squared():
    truth = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 5.0]])
    assert r_squared(truth, truth) == pytest.approx([1.0, 1.0])
    assert r_squared(np.repeat(truth.mean(0, keepdims=True), 3, 0), truth) == pytest.approx([0.0, 0.0])


@pytest.fixture(scope="module")
def pair_scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs")
    generate_dataset(
        out,
        count=8,
        seed=31337,
        scene_config=SceneConfig(min_objects=2, max_objects=3, text_probability=0.0),
        annotation_config=AnnotationConfig(caption_lengths=("short",), questions=1, detect=0, point=0),
    )
    return out


def test_packed_answers_match_the_engine_and_the_report_reads_out(pair_scenes):
    net, tokenizer, _ = load_model(EMBEDDED_DIR / EMBEDDED_MODEL, dtype="float32")
    net.eval()
    truth = list(read_truth(pair_scenes).items())
    rows = collect(net, tokenizer, truth)
    expected = [q for _, scene in truth for q in position_questions(scene)]
    assert len(rows["correct"]) == len(expected) > 8
    # the probe's packed pass answers as the engine does for the same question
    engine = moonlet.load()
    image, scene = next((image, scene) for image, scene in truth if position_questions(scene))
    for n, q in enumerate(position_questions(scene)[:4]):
        said = engine.query(image, q.text, settings={"max_tokens": 2})["answer"].strip()
        assert said.startswith("Yes" if rows["said_yes"][n] else "No"), (q.text, said)
    result = report(rows, fit_share=0.5)
    assert result["questions"] == len(expected)
    assert result["accuracy"] == pytest.approx(
        np.mean([r == q.answer for r, q in zip(rows["said_yes"], expected)]), abs=1e-3
    )
    assert len(result["noun_a_r2_by_block"]) == len(net.text.blocks)
    assert all(len(r2) == 2 for r2 in (result["feature_place_r2"], result["token_place_r2"]))
    assert "accuracy" in format_report(result)
