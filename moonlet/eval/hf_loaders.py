"""Loaders for the parquet files of the benchmarks' Hugging Face copies.

Column names differ between copies, so each loader accepts the usual aliases; copies that
nest one image's questions in a ``qa`` list are flattened first.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from .loaders import detection_samples, gqa_categories, normalise_box
from .parquet import class_label_names, read_parquet
from .samples import DatasetError, LazyImage, Sample, resolve_image


def pick(row: dict, names: tuple[str, ...], where: str, default=KeyError):
    """The first of ``names`` present in the row, else ``default`` or a DatasetError."""
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    if default is not KeyError:
        return default
    present = ", ".join(sorted(k for k in row if not k.startswith("__")))
    raise DatasetError(f"{where}: missing column {' / '.join(map(repr, names))} (columns: {present})")


def _where(row: dict, index: int) -> str:
    return f"{Path(row.get('__file__', '?')).name} row {row.get('__row__', index)}"


def flatten(rows: list[dict], key: str = "qa") -> list[tuple[str, dict]]:
    """(location, row) pairs; a row with a ``key`` list becomes one row per item."""
    out = []
    for index, row in enumerate(rows):
        if isinstance(row.get(key), list):
            for j, item in enumerate(row[key]):
                merged = {k: v for k, v in row.items() if k != key}
                merged.update(item)
                out.append((f"{_where(row, index)} {key}[{j}]", merged))
        else:
            out.append((_where(row, index), row))
    return out


def _image(row: dict, where: str):
    return pick(row, ("image",), where)


def _qid(row: dict, where: str, names: tuple[str, ...] = ("question_id", "questionId", "id")) -> str:
    return str(pick(row, names, where, default=where))


def _answers(value) -> list:
    if isinstance(value, list):
        return [a["answer"] if isinstance(a, dict) else a for a in value]
    return [value]


def vqav2(path: Path) -> list[Sample]:
    return [
        Sample(
            id=_qid(r, w),
            image=_image(r, w),
            question=pick(r, ("question",), w),
            answers=_answers(pick(r, ("answers",), w)),
            categories={"answer_type": r.get("answer_type") or "unknown"},
        )
        for w, r in flatten(read_parquet(path))
    ]


def textvqa(path: Path) -> list[Sample]:
    return [
        Sample(
            id=_qid(r, w),
            image=_image(r, w),
            question=pick(r, ("question",), w),
            answers=_answers(pick(r, ("answers",), w)),
        )
        for w, r in flatten(read_parquet(path))
    ]


def gqa(path: Path) -> list[Sample]:
    """Question rows with an ``image`` column, or question rows (``imageId``) plus a separate
    image table (``id``, ``image``) such as lmms-lab's ``*_images`` configuration."""
    rows = read_parquet(path)
    image_table = {str(r["id"]): r["image"] for r in rows if "image" in r and "question" not in r and "id" in r}
    samples = []
    for w, r in flatten([r for r in rows if "question" in r]):
        image = r.get("image")
        if image is None:
            image_id = str(pick(r, ("imageId", "image_id"), w))
            image = image_table.get(image_id)
            if image is None:
                raise DatasetError(f"{w}: no image with id {image_id!r} (add the GQA images parquet to the folder)")
        samples.append(
            Sample(
                id=_qid(r, w),
                image=image,
                question=r["question"],
                answers=[pick(r, ("answer",), w)],
                categories=gqa_categories(r),
            )
        )
    if not samples:
        raise DatasetError(f"no GQA question rows (with a 'question' column) in {path}")
    return samples


def pope(path: Path) -> list[Sample]:
    """Flat rows (question, answer, category) or one row per image with ``random``,
    ``popular`` and ``adversarial`` lists of {question, answer}."""
    samples = []
    for index, row in enumerate(read_parquet(path)):
        where = _where(row, index)
        nested = [c for c in ("random", "popular", "adversarial") if isinstance(row.get(c), list)]
        items = [(c, f"{where} {c}[{j}]", {**row, **qa}) for c in nested for j, qa in enumerate(row[c])]
        if not nested:
            items = [(str(pick(row, ("category",), where, default="all")), where, row)]
        for category, w, r in items:
            qid = str(pick(r, ("question_id", "id"), w, default=w))
            label = str(pick(r, ("answer", "label"), w)).strip().lower()
            samples.append(
                Sample(
                    id=f"{category}:{qid}",
                    image=_image(row, where),
                    question=pick(r, ("question", "text"), w),
                    answers=[label],
                    categories={"category": category},
                )
            )
    return samples


def docvqa(path: Path) -> list[Sample]:
    samples = []
    for w, r in flatten(read_parquet(path)):
        answers = pick(r, ("answers", "answer"), w)
        types = r.get("question_types") or []
        samples.append(
            Sample(
                id=_qid(r, w, ("questionId", "question_id", "id")),
                image=_image(r, w),
                question=pick(r, ("question", "query"), w),
                answers=_answers(answers),
                categories={"question_type": list(types)} if types else {},
            )
        )
    return samples


def _chart_source(r: dict) -> str:
    if "human_or_machine" in r:
        return "human" if int(r["human_or_machine"]) == 0 else "augmented"
    value = str(r.get("type") or r.get("source") or "all")
    return "human" if "human" in value else "augmented" if ("augment" in value or "machine" in value) else value


def chartqa(path: Path) -> list[Sample]:
    return [
        Sample(
            id=_qid(r, w),
            image=_image(r, w),
            question=pick(r, ("query", "question"), w),
            answers=[str(a) for a in _answers(pick(r, ("label", "answer"), w))],
            categories={"source": _chart_source(r)},
        )
        for w, r in flatten(read_parquet(path))
    ]


def tallyqa(path: Path) -> list[Sample]:
    samples = []
    for w, r in flatten(read_parquet(path)):
        simple = pick(r, ("issimple", "is_simple"), w, default=None)
        samples.append(
            Sample(
                id=_qid(r, w),
                image=_image(r, w),
                question=pick(r, ("question",), w),
                answers=[pick(r, ("answer", "number"), w)],
                categories={} if simple is None else {"subset": "simple" if simple else "complex"},
            )
        )
    return samples


def countbenchqa(path: Path) -> list[Sample]:
    samples = []
    for w, r in flatten(read_parquet(path)):
        number = pick(r, ("number", "answer"), w)
        samples.append(
            Sample(
                id=_qid(r, w),
                image=_image(r, w),
                question=pick(r, ("question",), w),
                answers=[number],
                categories={"count": str(number)},
            )
        )
    return samples


def _image_size(image, where: str) -> tuple[int, int]:
    from PIL import Image

    data = resolve_image(image) if isinstance(image, LazyImage) else image
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as opened:
            return opened.size
    except Exception as exc:  # Pillow raises many types for bad data
        raise DatasetError(f"{where}: cannot read the image size ({exc})") from None


def coco(path: Path, box_format: str = "xywh") -> list[Sample]:
    """Rows with ``image``, ``objects`` {``bbox``: pixel boxes, ``category``: names, or class
    ids named by the schema's ClassLabel}, optional ``width``/``height``/``image_id``.

    ``box_format``: ``xywh`` (COCO) or ``xyxy``.
    """
    samples = []
    for index, row in enumerate(read_parquet(path)):
        where = _where(row, index)
        objects = pick(row, ("objects",), where)
        if isinstance(objects, str):
            objects = json.loads(objects)
        boxes = pick(objects, ("bbox", "bboxes"), f"{where} objects")
        labels = pick(objects, ("category", "categories", "label"), f"{where} objects")
        crowd = objects.get("iscrowd") or [False] * len(boxes)
        labels_of = class_label_names(row["__file__"])
        names = next((labels_of[k] for k in ("category", "categories", "label") if k in labels_of), None)
        width, height = row.get("width"), row.get("height")
        if not width or not height:
            width, height = _image_size(row["image"], where)
        by_category: dict[str, list] = {}
        for box, label, is_crowd in zip(boxes, labels, crowd):
            name = names[label] if names and isinstance(label, int) else str(label)
            by_category.setdefault(name, []).append((normalise_box(box, width, height, box_format), bool(is_crowd)))
        image_id = row.get("image_id", f"{Path(row['__file__']).stem}:{row['__row__']}")
        samples.extend(detection_samples(image_id, _image(row, where), by_category))
    return samples
