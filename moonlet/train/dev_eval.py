"""Scoring the model being trained on a dev set, by greedy decoding through the engine.

The dev set is a generated dataset of its own seed (never the test seed). Every ``eval_every``
steps the first ``dev_scenes`` scenes are run through the same code as ``moonlet eval synthetic``
(queries batched, detect, point, captions) and scored the same way; the flat figures go to the
metrics log and the progress bar.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ..api import Moondream
from ..eval.benchmarks import BENCHMARKS
from ..eval.runner import predict
from ..eval.synthetic import load_synthetic, score_synthetic

# Short names of the figures shown on the progress bar.
BAR_KEYS = {"dev_qa": "qa", "dev_point": "pt", "dev_map50": "map", "dev_read": "read"}


def dev_samples(path: str | Path, scenes: int) -> list:
    """The samples of the first ``scenes`` scenes of a generated dataset."""
    samples = load_synthetic(Path(path))
    images = sorted({str(s.image) for s in samples})[:scenes]
    keep = set(images)
    return [s for s in samples if str(s.image) in keep]


def flat_metrics(metrics: dict, categories: dict) -> dict[str, float]:
    """``dev_*`` figures: QA overall and per question type, pointing, detection, captions."""
    out = {}
    names = {
        "qa_accuracy": "dev_qa",
        "point_in_box": "dev_point",
        "detect_map50": "dev_map50",
        "detect_absent_empty": "dev_detect_absent_empty",
        "caption_object_recall": "dev_caption_recall",
    }
    for key, name in names.items():
        if key in metrics:
            out[name] = round(float(metrics[key]), 4)
    for qtype, row in categories.get("type", {}).items():
        out[f"dev_qa_{qtype}"] = round(float(row["accuracy"]), 4)
    if "dev_qa_read" in out:
        out["dev_read"] = out["dev_qa_read"]
    return out


@torch.no_grad()
def evaluate_dev(model, tokenizer, samples: list, batch_size: int = 16) -> dict[str, float]:
    """Greedy predictions of ``model`` (left in the mode it was in) on ``samples``, scored."""
    was_training = model.training
    model.eval()
    try:
        moondream = Moondream(model, tokenizer, name="training")
        with tempfile.TemporaryDirectory() as tmp:
            predictions = predict(
                moondream,
                BENCHMARKS["synthetic"],
                samples,
                Path(tmp) / "dev.jsonl",
                batch_size=batch_size,
                progress=False,
            )
        metrics, categories = score_synthetic([(s, predictions[s.id]) for s in samples])
    finally:
        model.train(was_training)
    return flat_metrics(metrics, categories)
