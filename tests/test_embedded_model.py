"""The embedded model: loaded when no model is named, offline, right about its bundled scene's facts,
and better than answering blind."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import moonlet
from moonlet.checkpoints.loading import EMBEDDED_DIR, EMBEDDED_MODEL
from moonlet.data.config import AnnotationConfig, SceneConfig
from moonlet.data.reader import iter_rows
from moonlet.data.shards import generate_dataset

BUNDLED_SCENE = Path(__file__).resolve().parents[1] / "examples" / "scene.png"
# examples/scene.png is scene 0 of the held-out seed 777 (scripts/train_nano.sh's scenes-test), drawn
# with generator version 1's settings, the distribution moonlet-nano was trained on. The test redraws it
# to read its facts from the ground truth: a red hexagon, two orange triangles, the brown text "349".
# The questions are fixed here (version 1's phrasings; the generator's own change between versions),
# and each answer is computed from the truth.
BUNDLED_SEED = 777

# Measured with the shipped moonlet-nano v3 (step 17,368, session 25), CPU float32, greedy:
# - the bundled scene's 10 questions below: 9 right (step 12,650: 9; step 8,200: 8; v2: 4), the
#   README's triangle count among them (it reads "349" as "5439");
# - held-out seed 4242, 40 version-1 scenes x 6 questions = 240, asked as generator version 2 phrases
#   them: the model gets 207 right (86.3 %; step 12,650: 186; step 8,200: 150; v2 112); the best
#   constant answer per question type, chosen on those same 240 answers, gets 77 (32.1 %). The model
#   must beat that blind baseline by MIN_LEAD (measured lead 0.542; step 12,650: 0.454; v2 0.146).
# Raise these again from the next installed model's measurement.
BUNDLED_RIGHT_FLOOR = 8
SEED, SCENES, QUESTIONS_PER_SCENE = 4242, 40, 6
MIN_LEAD = 0.44  # accuracy points above the blind baseline (measured lead: 0.542)


@pytest.fixture(scope="module")
def model():
    return moonlet.load(device="cpu")


@pytest.fixture(scope="module")
def truth(tmp_path_factory) -> dict:
    """The bundled scene's ground truth (its image redrawn byte for byte, so the facts are its own)."""
    out = tmp_path_factory.mktemp("bundled")
    generate_dataset(out, count=1, seed=BUNDLED_SEED, scene_config=SceneConfig.version1())
    digest = hashlib.sha256((out / "images" / "000000.png").read_bytes()).hexdigest()
    assert digest == hashlib.sha256(BUNDLED_SCENE.read_bytes()).hexdigest(), "examples/scene.png is not this scene"
    return json.loads((out / "truth" / "shard-00000.jsonl").read_text().splitlines()[0])


def _questions(truth: dict) -> list[tuple[str, str]]:
    """(question, answer) pairs about the scene, each answer worked out from its truth."""
    objects, text = truth["objects"], truth["texts"][0]
    shapes = [o["shape"] for o in objects]
    colours = [o["colour"] for o in objects]
    red = next(o for o in objects if o["colour"] == "red")
    yes_no = lambda present: "Yes" if present else "No"  # noqa: E731
    return [
        ("How many triangles are there?", str(shapes.count("triangle"))),
        ("Looking at the image, does the image contain a square?", yes_no("square" in shapes)),
        ("What colour does the text have?", text["colour"]),
        ("Look closely. Read the brown writing.", text["text"]),
        ("Look closely. Tell me how many yellow objects there are.", str(colours.count("yellow"))),
        ("Is a red thing visible?", yes_no("red" in colours)),
        ("What kind of shape is the red figure?", red["shape"]),
        ("How many shapes are in the image?", str(len(objects))),
        ("Quick question: What colour is the writing?", text["colour"]),
        ("How many white figures do you see?", str(colours.count("white"))),
    ]


def test_default_model_is_moonlet_nano(model, monkeypatch):
    assert model.config.profile == "moonlet-nano"
    assert model.name == "moonlet-nano"
    assert (EMBEDDED_DIR / EMBEDDED_MODEL / "model.safetensors").stat().st_size <= 25 * 1024**2


def test_answers_offline_about_the_bundled_scene(model, truth):
    pairs = _questions(truth)
    assert pairs[0][1] == "2" and pairs[3][1] == "349"  # the facts read from the truth
    answers = [model.query(BUNDLED_SCENE, question)["answer"] for question, _ in pairs]
    assert answers[0].strip().isdigit(), answers[0]  # a count, as the model was trained to answer
    right = [q for (q, truth_answer), a in zip(pairs, answers) if a.strip().lower() == truth_answer.lower()]
    assert len(right) >= BUNDLED_RIGHT_FLOOR, list(zip(pairs, answers))


def test_counts_the_bundled_scenes_triangles(model):  # the README's command (v2 answered 0)
    assert model.query(BUNDLED_SCENE, "How many triangles are there?")["answer"].strip() == "2"


def _inside(point: dict, box: list) -> bool:
    return box[0] <= point["x"] <= box[2] and box[1] <= point["y"] <= box[3]


def test_detect_and_point_on_the_bundled_scene(model, truth):
    objects = model.detect(BUNDLED_SCENE, "triangle", settings={"max_objects": 5})["objects"]
    assert isinstance(objects, list) and 1 <= len(objects) <= 5
    for box in objects:
        assert set(box) == {"x_min", "y_min", "x_max", "y_max"}
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in box.values()), box  # measured inside here
        assert box["x_min"] < box["x_max"] and box["y_min"] < box["y_max"], box
    # absent objects are neither pointed at nor detected
    present = {(o["colour"], o["shape"]) for o in truth["objects"]}
    assert ("green", "triangle") not in present and ("brown", "triangle") not in present
    assert model.point(BUNDLED_SCENE, "green triangle")["points"] == []
    assert model.detect(BUNDLED_SCENE, "brown triangle")["objects"] == []


def test_points_at_the_bundled_scenes_hexagon(model, truth):  # step 12,650 missed it; 17,368: (0.18, 0.21)
    hexagon = next(o for o in truth["objects"] if o["shape"] == "hexagon")
    points = model.point(BUNDLED_SCENE, f"{hexagon['colour']} hexagon")["points"]
    assert len(points) == 1 and set(points[0]) == {"x", "y"} and _inside(points[0], hexagon["box_norm"]), points


def test_beats_the_blind_baseline_on_held_out_scenes(model, tmp_path):
    annotations = AnnotationConfig(questions=QUESTIONS_PER_SCENE, detect=0, point=0)
    generate_dataset(
        tmp_path, count=SCENES, seed=SEED, scene_config=SceneConfig.version1(), annotation_config=annotations
    )
    rows = [r for r in iter_rows(tmp_path) if r.kind == "query"]
    answers = model.batch_query([(r.image, r.question) for r in rows], settings={"temperature": 0, "max_tokens": 16})
    truths = [r.answer.strip().lower() for r in rows]
    correct = sum(a["answer"].strip().lower() == t for a, t in zip(answers, truths))
    by_type: dict[str, list[str]] = defaultdict(list)
    for row, truth in zip(rows, truths):
        by_type[row.type].append(truth)
    # blind: one answer per question type, the most common true answer of that type (an oracle choice)
    blind = sum(Counter(group).most_common(1)[0][1] for group in by_type.values())
    accuracy, baseline = correct / len(rows), blind / len(rows)
    assert accuracy >= baseline + MIN_LEAD, f"model {correct}/{len(rows)}, blind baseline {blind}/{len(rows)}"
