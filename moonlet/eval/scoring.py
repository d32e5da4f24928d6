"""Scoring a benchmark's predictions: overall metrics and per-category breakdowns."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from .detection import coco_map
from .metrics import anls, binary_metrics, count_match, exact_match, relaxed_accuracy, vqa_accuracy
from .samples import Sample
from .synthetic import score_synthetic

# metric -> (name in the results, per-question score(prediction, sample))
PER_QUESTION: dict[str, tuple[str, Callable[[Any, Sample], float]]] = {
    "vqa": ("accuracy", lambda p, s: vqa_accuracy(p, s.answers)),
    "exact": ("accuracy", lambda p, s: max(exact_match(p, a) for a in s.answers)),
    "count": ("accuracy", lambda p, s: count_match(p, s.answers[0])),
    "anls": ("anls", lambda p, s: anls(p, s.answers)),
    "relaxed": ("relaxed_accuracy", lambda p, s: relaxed_accuracy(p, [str(a) for a in s.answers])),
}


def _category_values(sample: Sample):
    """(axis, value) pairs; a list value counts the sample once under each of its entries."""
    for axis, value in sample.categories.items():
        for item in value if isinstance(value, list) else [value]:
            yield axis, str(item)


def _group(pairs):
    groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for sample, prediction in pairs:
        for axis, value in _category_values(sample):
            groups[axis][value].append((sample, prediction))
    return {axis: dict(sorted(values.items())) for axis, values in groups.items()}


def _score_per_question(metric: str, pairs) -> tuple[dict, dict]:
    name, score = PER_QUESTION[metric]
    values = {s.id: score(p, s) for s, p in pairs}
    metrics = {name: sum(values.values()) / len(values)}
    categories = {
        axis: {v: {"n": len(g), name: sum(values[s.id] for s, _ in g) / len(g)} for v, g in groups.items()}
        for axis, groups in _group(pairs).items()
    }
    return metrics, categories


def _score_pope(pairs) -> tuple[dict, dict]:
    def block(group):
        return {"n": len(group), **binary_metrics([p for _, p in group], [s.answers[0] for s, _ in group])}

    metrics = block(pairs)
    metrics.pop("n")
    return metrics, {axis: {v: block(g) for v, g in groups.items()} for axis, groups in _group(pairs).items()}


def _score_map(pairs) -> tuple[dict, dict]:
    gts, dets = [], []
    for sample, prediction in pairs:
        image, category = sample.target["image"], sample.question
        for box, crowd in zip(sample.target["boxes"], sample.target["crowd"]):
            gts.append({"image": image, "category": category, "box": box, "crowd": crowd})
        dets.extend({"image": image, "category": category, "box": box} for box in prediction)
    result = coco_map(gts, dets)
    counts = defaultdict(int)
    for sample, _ in pairs:
        counts[sample.question] += 1
    metrics = {k: result[k] for k in ("map", "map50", "map75") if k in result}
    per_category = {c: {"n": counts.get(c, 0), **v} for c, v in sorted(result.get("per_category", {}).items())}
    return metrics, {"category": per_category} if per_category else {}


def score(metric: str, samples: list[Sample], predictions: Mapping[str, Any]) -> dict[str, Any]:
    """``{"n", "missing", "metrics", "categories"}`` over the samples that have a prediction."""
    pairs = [(s, predictions[s.id]) for s in samples if s.id in predictions]
    result: dict[str, Any] = {"n": len(pairs), "missing": len(samples) - len(pairs), "metrics": {}, "categories": {}}
    if not pairs:
        return result
    if metric in PER_QUESTION:
        metrics, categories = _score_per_question(metric, pairs)
    elif metric == "pope":
        metrics, categories = _score_pope(pairs)
    elif metric == "map":
        metrics, categories = _score_map(pairs)
    elif metric == "synthetic":
        metrics, categories = score_synthetic(pairs)
    else:
        raise ValueError(f"unknown metric {metric!r}")
    result.update(metrics=metrics, categories=categories)
    return result
