"""The embedded model: loaded when no model is named, offline, and above a fixed accuracy floor."""

from __future__ import annotations

from pathlib import Path

import pytest

import moonlet
from moonlet.data.config import AnnotationConfig
from moonlet.data.reader import iter_rows
from moonlet.data.shards import generate_dataset
from moonlet.checkpoints.loading import EMBEDDED_DIR, EMBEDDED_MODEL

# Held-out scenes (seeds never used in training) and the floor this check holds the model to.
# It is far below the model's measured scores (docs/models/moonlet-nano.md) and far above what
# an untrained or mis-loaded model gets (0 %); it catches a broken model, not small regressions.
SEED, SCENES, QA_FLOOR = 4242, 12, 0.25


@pytest.fixture(scope="module")
def model():
    return moonlet.load(device="cpu")


def test_default_model_is_moonlet_nano(model, monkeypatch):
    assert model.config.profile == "moonlet-nano"
    assert model.name == "moonlet-nano"
    assert (EMBEDDED_DIR / EMBEDDED_MODEL / "model.safetensors").stat().st_size <= 25 * 1024**2


def test_answers_offline_about_the_bundled_scene(model):
    image = Path(__file__).resolve().parents[1] / "examples" / "scene.png"
    answer = model.query(image, "How many triangles are there?")["answer"]
    assert isinstance(answer, str) and answer.strip()
    assert model.detect(image, "triangle", settings={"max_objects": 5})["objects"] is not None


def test_fixed_accuracy_floor(model, tmp_path):
    generate_dataset(tmp_path, count=SCENES, seed=SEED, annotation_config=AnnotationConfig(questions=6, detect=0, point=0))
    rows = [r for r in iter_rows(tmp_path) if r.kind == "query"]
    answers = model.batch_query([(r.image, r.question) for r in rows], settings={"temperature": 0, "max_tokens": 16})
    correct = sum(a["answer"].strip().lower() == r.answer.strip().lower() for a, r in zip(answers, rows))
    assert correct / len(rows) >= QA_FLOOR, f"{correct}/{len(rows)} correct"
