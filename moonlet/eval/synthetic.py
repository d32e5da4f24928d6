"""The synthetic benchmark: JSON lines in the training-data format, scored per task.

Each line: ``{"image": path relative to the file}`` plus one of ``{"question", "answer"
[, "type"]}``, ``{"object", "boxes": [[x0, y0, x1, y1], ...]}``, ``{"object", "points":
[[x, y], ...] [, "boxes"]}`` or ``{"caption" [, "length"] [, "objects": [names]]}``; coordinates
normalised. Empty ``boxes``/``points`` mean the object is absent. Other keys are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from .detection import coco_map
from .metrics import count_match, exact_match
from .normalize import parse_number
from .points import nearest_distances, point_in_box
from .samples import DatasetError, Sample, need, read_jsonl

EVAL_SPLITS = ("test*.jsonl", "val*.jsonl", "eval*.jsonl")


def synthetic_files(path: Path) -> list[Path]:
    """The file itself; in a folder its test/val/eval JSONL files, or else every JSONL file."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"data path not found: {path}")
    for pattern in EVAL_SPLITS:
        found = sorted(path.glob(pattern))
        if found:
            return found
    found = sorted(path.glob("*.jsonl"))
    if not found:
        raise DatasetError(f"no .jsonl files in {path}")
    return found


def _boxes(value, where: str) -> list[list[float]]:
    if not isinstance(value, list) or any(not isinstance(b, list) or len(b) != 4 for b in value):
        raise DatasetError(f"{where}: 'boxes' must be a list of [x_min, y_min, x_max, y_max]")
    return [[float(v) for v in b] for b in value]


def _points(value, where: str) -> list[list[float]]:
    if not isinstance(value, list) or any(not isinstance(p, list) or len(p) != 2 for p in value):
        raise DatasetError(f"{where}: 'points' must be a list of [x, y]")
    return [[float(v) for v in p] for p in value]


def _sample(row: dict, sample_id: str, image: Path, where: str) -> Sample | None:
    if "question" in row:
        return Sample(
            id=sample_id,
            image=image,
            question=str(row["question"]),
            answers=[need(row, "answer", where)],
            categories={"type": str(row["type"])} if row.get("type") else {},
        )
    if "points" in row:
        target = {"points": _points(row["points"], where)}
        if "boxes" in row:
            target["boxes"] = _boxes(row["boxes"], where)
        return Sample(id=sample_id, image=image, task="point", question=str(need(row, "object", where)), target=target)
    if "boxes" in row:
        boxes = _boxes(row["boxes"], where)
        name = str(need(row, "object", where))
        return Sample(
            id=sample_id,
            image=image,
            task="detect",
            question=name,
            categories={"object": name},
            target={"image": str(image), "boxes": boxes, "crowd": [False] * len(boxes)},
        )
    if "caption" in row:
        objects = row.get("objects")
        if not objects:
            return None  # nothing to score a caption against
        target = {"objects": [str(o) for o in objects], "length": str(row.get("length", "normal"))}
        return Sample(id=sample_id, image=image, task="caption", target=target)
    raise DatasetError(f"{where}: expected 'question'/'answer', 'object'/'boxes', 'object'/'points' or 'caption'")


def load_synthetic(path: Path, images: Path | None = None) -> list[Sample]:
    samples = []
    for file in synthetic_files(path):
        root = images or file.parent
        for line, row in read_jsonl(file, "synthetic JSONL file"):
            where = f"{file}:{line}"
            sample = _sample(
                row, str(row.get("id", f"{file.stem}:{line}")), root / str(need(row, "image", where)), where
            )
            if sample is not None:
                samples.append(sample)
    if not samples:
        raise DatasetError(f"no scorable rows in {path} (caption rows need an 'objects' list)")
    _boxes_for_points(samples)
    return samples


def _boxes_for_points(samples: list[Sample]) -> None:
    """Give point rows without boxes the boxes of a detect row for the same image and object."""
    boxes = {(str(s.image), s.question): s.target["boxes"] for s in samples if s.task == "detect"}
    for sample in samples:
        key = (str(sample.image), sample.question)
        if sample.task == "point" and "boxes" not in sample.target and key in boxes:
            sample.target["boxes"] = boxes[key]


def names_object(caption: str, name: str) -> bool:
    """Whether the caption mentions the object (whole words, case-insensitive, plural allowed)."""
    pattern = r"\b" + r"\s+".join(map(re.escape, name.lower().split())) + r"(s|es)?\b"
    return re.search(pattern, caption.lower()) is not None


def score_synthetic(pairs: list[tuple[Sample, object]]) -> tuple[dict, dict]:
    """(metrics, categories) for the tasks present among the scored (sample, prediction) pairs."""
    metrics: dict = {}
    categories: dict = {}
    qa = [(s, p) for s, p in pairs if s.task == "query"]
    if qa:
        scores = [(s, _qa_score(p, s.answers[0])) for s, p in qa]
        metrics["qa_n"] = len(scores)
        metrics["qa_accuracy"] = sum(v for _, v in scores) / len(scores)
        by_type: dict = {}
        for s, v in scores:
            by_type.setdefault(s.categories.get("type", "untyped"), []).append(v)
        categories["type"] = {t: {"n": len(v), "accuracy": sum(v) / len(v)} for t, v in sorted(by_type.items())}
    detect = [(s, p) for s, p in pairs if s.task == "detect"]
    if detect:
        gts = [{"image": s.id, "category": s.question, "box": b} for s, _ in detect for b in s.target["boxes"]]
        dets = [{"image": s.id, "category": s.question, "box": b} for s, p in detect for b in p]
        result = coco_map(gts, dets)
        metrics.update(detect_n=len(detect), detect_map50=result["map50"], detect_map=result["map"])
        metrics.update({f"detect_{k}": v for k, v in _absent_rate(detect, "boxes").items()})
        categories["object"] = {
            c: {"ap50": v["ap50"], "ap": v["ap"]} for c, v in result.get("per_category", {}).items()
        }
    metrics.update(_point_metrics([(s, p) for s, p in pairs if s.task == "point"]))
    captions = [(s, p) for s, p in pairs if s.task == "caption"]
    if captions:
        recall = [sum(names_object(p, o) for o in s.target["objects"]) / len(s.target["objects"]) for s, p in captions]
        metrics.update(caption_n=len(captions), caption_object_recall=sum(recall) / len(recall))
    return metrics, categories


def _qa_score(prediction: str, answer) -> float:
    """Numbers (3, "3") compared as numbers, anything else by normalised exact match."""
    if not isinstance(answer, bool) and parse_number(answer) is not None:
        return count_match(prediction, answer)
    return exact_match(prediction, answer)


def _absent_rate(pairs: list[tuple[Sample, list]], key: str) -> dict:
    """For rows whose object is absent (no gold), the share answered with nothing."""
    absent = [p for s, p in pairs if not s.target[key]]
    return {"absent_n": len(absent), "absent_empty": sum(not p for p in absent) / len(absent)} if absent else {}


def _point_metrics(pairs: list[tuple[Sample, list]]) -> dict:
    """Point-in-box rates for rows with boxes, nearest-point distances for the others."""
    if not pairs:
        return {}
    out: dict = {"point_n": len(pairs)}
    boxed = [point_in_box(p, s.target["boxes"]) for s, p in pairs if "boxes" in s.target]
    if boxed:
        points, boxes = sum(c["points"] for c in boxed), sum(c["boxes"] for c in boxed)
        out["point_in_box"] = sum(c["hits"] for c in boxed) / points if points else 0.0
        out["point_box_recall"] = sum(c["covered"] for c in boxed) / boxes if boxes else 0.0
    distances = [d for s, p in pairs if "boxes" not in s.target for d in nearest_distances(p, s.target["points"])]
    if distances:
        out["point_mean_distance"] = sum(distances) / len(distances)
        out["point_within_0.05"] = sum(d <= 0.05 for d in distances) / len(distances)
    out.update({f"point_{k}": v for k, v in _absent_rate(pairs, "points").items()})
    return out
