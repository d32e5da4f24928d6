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
from moonlet.data.config import AnnotationConfig
from moonlet.data.reader import iter_rows
from moonlet.data.shards import generate_dataset

BUNDLED_SCENE = Path(__file__).resolve().parents[1] / "examples" / "scene.png"
# examples/scene.png is scene 0 of the held-out seed 777 (scripts/train_nano.sh's scenes-test); the
# test regenerates it to get its facts: a red hexagon, two orange triangles, the brown text "349".
BUNDLED_SEED = 777

# Measured with the shipped moonlet-nano (commit 91a5a7c's weights), CPU float32, greedy:
# - the bundled scene's 10 generated questions: 4 right (the two yes/no ones and the two "0" counts);
# - held-out seed 4242, 40 scenes x 6 questions = 240: the model gets 98 right (40.8 %); the best
#   constant answer per question type, chosen on those same 240 answers, gets 75 (31.3 %). (On seed
#   777 the same sizes give 98 against 68.) The model must beat that blind baseline by MIN_LEAD.
# A later issue retrains the model; raise these from its measurement then.
BUNDLED_RIGHT_FLOOR = 4
SEED, SCENES, QUESTIONS_PER_SCENE = 4242, 40, 6
MIN_LEAD = 0.05  # accuracy points above the blind baseline (measured lead: 0.096)


@pytest.fixture(scope="module")
def model():
    return moonlet.load(device="cpu")


@pytest.fixture(scope="module")
def bundled(tmp_path_factory) -> tuple[list, list[dict]]:
    """The generator's rows and ground-truth objects for the bundled scene (its image regenerated
    byte for byte, so the facts are the scene's own, not typed in)."""
    out = tmp_path_factory.mktemp("bundled")
    generate_dataset(out, count=1, seed=BUNDLED_SEED)
    rows = list(iter_rows(out))
    digest = hashlib.sha256(rows[0].image.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(BUNDLED_SCENE.read_bytes()).hexdigest(), "examples/scene.png is not this scene"
    truth = json.loads((out / "truth" / "shard-00000.jsonl").read_text().splitlines()[0])
    return rows, truth["objects"]


def test_default_model_is_moonlet_nano(model, monkeypatch):
    assert model.config.profile == "moonlet-nano"
    assert model.name == "moonlet-nano"
    assert (EMBEDDED_DIR / EMBEDDED_MODEL / "model.safetensors").stat().st_size <= 25 * 1024**2


def test_answers_offline_about_the_bundled_scene(model, bundled):
    bundled_rows, _ = bundled
    answer = model.query(BUNDLED_SCENE, "How many triangles are there?")["answer"]
    assert answer.strip().isdigit(), answer  # a count, as the model was trained to answer (the truth is 2)
    questions = [r for r in bundled_rows if r.kind == "query"]
    answers = [model.query(BUNDLED_SCENE, r.question)["answer"] for r in questions]
    right = [r.question for r, a in zip(questions, answers) if a.strip().lower() == r.answer.strip().lower()]
    assert len(right) >= BUNDLED_RIGHT_FLOOR, list(zip([r.question for r in questions], answers))


@pytest.mark.xfail(strict=True, reason="moonlet-nano answers 0 (measured); the scene has 2 triangles")
def test_counts_the_bundled_scenes_triangles(model):
    assert model.query(BUNDLED_SCENE, "How many triangles are there?")["answer"].strip() == "2"


def _inside(point: dict, box: tuple) -> bool:
    return box[0] <= point["x"] <= box[2] and box[1] <= point["y"] <= box[3]


def test_detect_and_point_on_the_bundled_scene(model, bundled):
    bundled_rows, scene_objects = bundled
    objects = model.detect(BUNDLED_SCENE, "triangle", settings={"max_objects": 5})["objects"]
    assert isinstance(objects, list) and 1 <= len(objects) <= 5
    for box in objects:
        assert set(box) == {"x_min", "y_min", "x_max", "y_max"}
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in box.values()), box  # measured inside here
        assert box["x_min"] < box["x_max"] and box["y_min"] < box["y_max"], box
    # the generator's point rows: the red hexagon is found, the absent green triangle is not
    for row in (r for r in bundled_rows if r.kind == "point"):
        points = model.point(BUNDLED_SCENE, row.object)["points"]
        assert len(points) == len(row.points), (row.object, points)
        truth = next(o for o in scene_objects if f"{o['colour']} {o['shape']}" == row.object) if row.points else None
        for point in points:
            assert set(point) == {"x", "y"} and _inside(point, truth["box_norm"]), (row.object, point, truth)
    # and an absent object is not detected
    absent = next(r for r in bundled_rows if r.kind == "detect" and not r.boxes)
    assert model.detect(BUNDLED_SCENE, absent.object)["objects"] == []


def test_beats_the_blind_baseline_on_held_out_scenes(model, tmp_path):
    annotations = AnnotationConfig(questions=QUESTIONS_PER_SCENE, detect=0, point=0)
    generate_dataset(tmp_path, count=SCENES, seed=SEED, annotation_config=annotations)
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
