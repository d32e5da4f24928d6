"""The tower probe: a vision tower trained on the dense objective alone, scored per object size."""

from __future__ import annotations

import json

import pytest
from test_train import dataset  # noqa: F401  (fixture)

from moonlet.data.config import AnnotationConfig, SceneConfig
from moonlet.data.shards import generate_dataset
from moonlet.train.dense import read_truth
from moonlet.train.tower_probe import main, size_bucket


@pytest.fixture(scope="module")
def text_scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("text-scenes")
    generate_dataset(
        out,
        count=6,
        seed=5,
        scene_config=SceneConfig(width=160, height=160, max_objects=2, text_probability=1.0),
        annotation_config=AnnotationConfig(caption_lengths=("short",), questions=1, detect=1, point=1),
    )
    return out


def test_size_buckets():
    assert size_bucket([0.1, 0.1, 0.15, 0.12]) == "tiny"
    assert size_bucket([0.1, 0.1, 0.2, 0.12]) == "small"
    assert size_bucket([0.0, 0.0, 0.2, 0.29]) == "medium"
    assert size_bucket([0.0, 0.0, 0.5, 0.1]) == "large"


def test_probe_scores_every_object(dataset, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "tower.jsonl"
    args = ["--train", str(dataset), "--test", str(dataset), "--variant", "v3", "--steps", "2", "--batch-size", "2"]
    assert main([*args, "--train-scenes", "8", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result == json.loads(capsys.readouterr().out)
    n_objects = sum(len(scene["objects"]) for scene in read_truth(dataset).values())
    assert result["objects_all"] == n_objects
    assert sum(v for k, v in result.items() if k.startswith("objects_") and k != "objects_all") == n_objects
    assert 0.0 <= result["shape_all"] <= 1.0 and result["tokens"] == 144 and result["cpu"]
    assert "glyph_top1" not in result


def test_probe_with_glyphs_scores_text_patches(text_scenes, capsys):
    assert any(scene["texts"] for scene in read_truth(text_scenes).values())
    args = [
        "--train",
        str(text_scenes),
        "--test",
        str(text_scenes),
        "--variant",
        "v3",
        "--steps",
        "2",
        "--batch-size",
        "2",
    ]
    assert main([*args, "--train-scenes", "8", "--glyph-weight", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["glyph_weight"] == 1.0 and result["glyph_patches"] > 0 and 0.0 <= result["glyph_top1"] <= 1.0
