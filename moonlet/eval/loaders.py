"""Loaders for the benchmarks' official files (JSON annotations next to image folders).

Each ``load_NAME(path, images=None)`` takes the annotation file or the folder holding it and
returns :class:`Sample` objects; ``images`` overrides where the image files are looked for.
"""

from __future__ import annotations

import re
from pathlib import Path

from .images import ImageFinder
from .samples import DatasetError, Sample, need, read_json, read_jsonl


def find_file(path: Path, patterns: tuple[str, ...], what: str) -> Path:
    """``path`` itself when it is a file, else the single file in it matching a pattern."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise DatasetError(f"data path not found: {path}")
    for pattern in patterns:
        found = sorted(path.glob(pattern))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(f.name for f in found)
            raise DatasetError(f"several {what} files in {path} ({names}); pass one of them as --data")
    listing = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "empty"
    raise DatasetError(f"no {what} file ({' or '.join(patterns)}) in {path} (it holds: {listing})")


def find_files(path: Path, patterns: tuple[str, ...], what: str) -> list[Path]:
    """``[path]`` for a file, else every file in the folder matching one of the patterns."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"data path not found: {path}")
    found = sorted({f for pattern in patterns for f in path.glob(pattern) if f.is_file()})
    if not found:
        raise DatasetError(f"no {what} files ({' or '.join(patterns)}) in {path}")
    return found


def _list_of(data, key: str | None, where: Path) -> list:
    items = need(data, key, str(where)) if key else data
    if not isinstance(items, list):
        raise DatasetError(f"{where}: expected a list{f' under {key!r}' if key else ''}, got {type(items).__name__}")
    return items


# --- VQAv2 ---------------------------------------------------------------------------------


def load_vqav2(path: Path, images: Path | None = None) -> list[Sample]:
    """``v2_OpenEnded_mscoco_<split>_questions.json`` + ``v2_mscoco_<split>_annotations.json``;
    images ``COCO_<split>_<id:012d>.jpg`` in ``<split>/`` beside them."""
    questions_file = find_file(path, ("*questions*.json",), "VQAv2 questions")
    folder = questions_file.parent
    annotations_file = find_file(folder, ("*annotations*.json",), "VQAv2 annotations")
    questions = read_json(questions_file, "VQAv2 questions file")
    annotations = read_json(annotations_file, "VQAv2 annotations file")
    split = questions.get("data_subtype") if isinstance(questions, dict) else None
    if not split:
        match = re.search(r"(train|val|test-dev|test)20\d\d", questions_file.name)
        if not match:
            raise DatasetError(f"{questions_file}: missing key 'data_subtype' (the split, e.g. val2014)")
        split = match.group(0)
    by_id = {}
    for i, ann in enumerate(_list_of(annotations, "annotations", annotations_file)):
        by_id[need(ann, "question_id", f"{annotations_file} annotations[{i}]")] = ann
    roots = [folder / split, folder / "images" / split, folder.parent / split, folder / "images", folder]
    finder = ImageFinder(roots, images)
    samples = []
    for i, q in enumerate(_list_of(questions, "questions", questions_file)):
        where = f"{questions_file} questions[{i}]"
        qid = need(q, "question_id", where)
        ann = by_id.get(qid)
        if ann is None:
            raise DatasetError(f"{annotations_file}: no annotation for question_id {qid}")
        ann_where = f"{annotations_file} question {qid}"
        answers = [need(a, "answer", f"{ann_where} answers") for a in need(ann, "answers", ann_where)]
        image_id = int(need(q, "image_id", where))
        samples.append(
            Sample(
                id=str(qid),
                image=finder(f"COCO_{split}_{image_id:012d}.jpg"),
                question=need(q, "question", where),
                answers=answers,
                categories={"answer_type": ann.get("answer_type", "unknown")},
            )
        )
    return samples


# --- TextVQA -------------------------------------------------------------------------------


def load_textvqa(path: Path, images: Path | None = None) -> list[Sample]:
    """``TextVQA_0.5.1_<split>.json`` (``{"data": [...]}``); images ``<image_id>.jpg`` in
    ``train_images/`` (train and val) or ``test_images/``."""
    file = find_file(path, ("TextVQA*.json", "*textvqa*.json", "*.json"), "TextVQA")
    folder = file.parent
    finder = ImageFinder([folder / "train_images", folder / "test_images", folder / "images", folder], images)
    samples = []
    for i, row in enumerate(_list_of(read_json(file, "TextVQA file"), "data", file)):
        where = f"{file} data[{i}]"
        samples.append(
            Sample(
                id=str(need(row, "question_id", where)),
                image=finder(f"{need(row, 'image_id', where)}.jpg"),
                question=need(row, "question", where),
                answers=list(need(row, "answers", where)),
            )
        )
    return samples


# --- GQA -----------------------------------------------------------------------------------


def gqa_categories(row: dict) -> dict[str, str]:
    types = row.get("types") or {}
    return {k: types[k] for k in ("structural", "semantic") if types.get(k)}


def load_gqa(path: Path, images: Path | None = None) -> list[Sample]:
    """``<split>_balanced_questions.json``: a dict question id -> {question, imageId, answer,
    types...}; images ``<imageId>.jpg`` in ``images/``."""
    file = find_file(path, ("*balanced_questions.json", "*questions*.json"), "GQA questions")
    data = read_json(file, "GQA questions file")
    if not isinstance(data, dict):
        raise DatasetError(f"{file}: expected a JSON object mapping question ids to questions")
    finder = ImageFinder([file.parent / "images", file.parent.parent / "images", file.parent], images)
    samples = []
    for qid, row in data.items():
        where = f"{file} question {qid}"
        samples.append(
            Sample(
                id=str(qid),
                image=finder(f"{need(row, 'imageId', where)}.jpg"),
                question=need(row, "question", where),
                answers=[need(row, "answer", where)],
                categories=gqa_categories(row),
            )
        )
    return samples


# --- POPE ----------------------------------------------------------------------------------

POPE_CATEGORIES = ("random", "popular", "adversarial")


def pope_category(name: str) -> str:
    return next((c for c in POPE_CATEGORIES if c in name.lower()), Path(name).stem)


def load_pope(path: Path, images: Path | None = None) -> list[Sample]:
    """``coco_pope_{random,popular,adversarial}.json``: JSON lines of {question_id, image,
    text, label}; images from COCO ``val2014/``. The category comes from the file name."""
    files = find_files(path, ("*pope*.json", "*pope*.jsonl"), "POPE")
    folder = files[0].parent
    finder = ImageFinder([folder / "val2014", folder / "images", folder.parent / "val2014", folder], images)
    samples = []
    for file in files:
        category = pope_category(file.name)
        for line, row in read_jsonl(file, "POPE file"):
            where = f"{file}:{line}"
            label = str(need(row, "label", where)).strip().lower()
            samples.append(
                Sample(
                    id=f"{category}:{need(row, 'question_id', where)}",
                    image=finder(need(row, "image", where)),
                    question=need(row, "text", where),
                    answers=[label],
                    categories={"category": category},
                )
            )
    return samples


# --- DocVQA --------------------------------------------------------------------------------


def load_docvqa(path: Path, images: Path | None = None) -> list[Sample]:
    """``val_v1.0.json`` (``{"data": [...]}`` with questionId, question, image, answers);
    ``image`` is relative to the JSON's folder (``documents/<name>.png``)."""
    file = find_file(path, ("val_v1.0*.json", "*_v1.0*.json", "*.json"), "DocVQA")
    finder = ImageFinder([file.parent, file.parent / "spdocvqa_images", file.parent / "images"], images)
    samples = []
    for i, row in enumerate(_list_of(read_json(file, "DocVQA file"), "data", file)):
        where = f"{file} data[{i}]"
        if "answers" not in row:
            raise DatasetError(f"{where}: missing key 'answers' (the DocVQA test split has no public answers)")
        types = row.get("question_types") or []
        samples.append(
            Sample(
                id=str(need(row, "questionId", where)),
                image=finder(need(row, "image", where)),
                question=need(row, "question", where),
                answers=list(row["answers"]),
                categories={"question_type": list(types)} if types else {},
            )
        )
    return samples


# --- ChartQA -------------------------------------------------------------------------------


def load_chartqa(path: Path, images: Path | None = None) -> list[Sample]:
    """``test/test_human.json`` and ``test/test_augmented.json``: lists of {imgname, query,
    label}; images in ``test/png/``. The source (human/augmented) comes from the file name."""
    files = find_files(path, ("*_human.json", "*_augmented.json"), "ChartQA")
    folder = files[0].parent
    finder = ImageFinder([folder / "png", folder / "images", folder], images)
    samples = []
    for file in files:
        source = "human" if "human" in file.name else "augmented" if "augmented" in file.name else file.stem
        for i, row in enumerate(_list_of(read_json(file, "ChartQA file"), None, file)):
            where = f"{file}[{i}]"
            samples.append(
                Sample(
                    id=f"{source}:{i}",
                    image=finder(need(row, "imgname", where)),
                    question=need(row, "query", where),
                    answers=[str(need(row, "label", where))],
                    categories={"source": source},
                )
            )
    return samples


# --- TallyQA -------------------------------------------------------------------------------


def load_tallyqa(path: Path, images: Path | None = None) -> list[Sample]:
    """``test.json``: a list of {image, question, answer, question_id, issimple}; ``image`` is
    relative to the image root (``VG_100K/...``, ``val2014/...``)."""
    file = find_file(path, ("test.json", "*.json"), "TallyQA")
    finder = ImageFinder([file.parent, file.parent / "images"], images)
    samples = []
    for i, row in enumerate(_list_of(read_json(file, "TallyQA file"), None, file)):
        where = f"{file}[{i}]"
        simple = row.get("issimple", row.get("is_simple"))
        samples.append(
            Sample(
                id=str(row.get("question_id", i)),
                image=finder(need(row, "image", where)),
                question=need(row, "question", where),
                answers=[need(row, "answer", where)],
                categories={} if simple is None else {"subset": "simple" if simple else "complex"},
            )
        )
    return samples


# --- CountBenchQA --------------------------------------------------------------------------


def load_countbenchqa(path: Path, images: Path | None = None) -> list[Sample]:
    """CountBenchQA ships as parquet; a JSON list (or JSON lines) of {image, question, number}
    with image paths relative to the file is accepted too."""
    file = find_file(path, ("*.json", "*.jsonl"), "CountBenchQA")
    rows = [r for _, r in read_jsonl(file)] if file.suffix == ".jsonl" else _list_of(read_json(file), None, file)
    finder = ImageFinder([file.parent, file.parent / "images"], images)
    samples = []
    for i, row in enumerate(rows):
        where = f"{file}[{i}]"
        number = need(row, "number", where)
        samples.append(
            Sample(
                id=str(row.get("id", i)),
                image=finder(need(row, "image", where)),
                question=need(row, "question", where),
                answers=[number],
                categories={"count": str(number)},
            )
        )
    return samples


# --- COCO detection ------------------------------------------------------------------------


def normalise_box(box, width: float, height: float, box_format: str = "xywh") -> list[float]:
    """A pixel box (COCO ``[x, y, w, h]`` or ``[x0, y0, x1, y1]``) as normalised corners."""
    x0, y0, a, b = (float(v) for v in box)
    x1, y1 = (x0 + a, y0 + b) if box_format == "xywh" else (a, b)
    return [x0 / width, y0 / height, x1 / width, y1 / height]


def detection_samples(image_id, image, by_category: dict[str, list[tuple[list, bool]]]) -> list[Sample]:
    """One detect sample per category present in the image."""
    return [
        Sample(
            id=f"{image_id}:{name}",
            image=image,
            task="detect",
            question=name,
            categories={"category": name},
            target={"image": image_id, "boxes": [b for b, _ in boxes], "crowd": [c for _, c in boxes]},
        )
        for name, boxes in by_category.items()
    ]


def load_coco(path: Path, images: Path | None = None) -> list[Sample]:
    """``annotations/instances_<split>.json`` (images, annotations with ``bbox`` [x, y, w, h]
    in pixels, categories); images ``<file_name>`` in ``<split>/``."""
    file = find_file(path, ("instances_*.json", "annotations/instances_*.json", "*.json"), "COCO instances")
    data = read_json(file, "COCO instances file")
    match = re.match(r"instances_(\w+)\.json", file.name)
    split = match.group(1) if match else ""
    roots = [file.parent / split, file.parent.parent / split] if split else []
    finder = ImageFinder(roots + [file.parent / "images", file.parent], images)
    where = f"{file} categories"
    names = {need(c, "id", where): need(c, "name", where) for c in _list_of(data, "categories", file)}
    image_rows = {need(im, "id", f"{file} images"): im for im in _list_of(data, "images", file)}
    per_image: dict = {}
    for i, ann in enumerate(_list_of(data, "annotations", file)):
        where = f"{file} annotations[{i}]"
        image_id = need(ann, "image_id", where)
        info = image_rows.get(image_id)
        if info is None:
            raise DatasetError(f"{where}: image_id {image_id} is not in 'images'")
        category = names.get(need(ann, "category_id", where))
        if category is None:
            raise DatasetError(f"{where}: category_id {ann['category_id']} is not in 'categories'")
        size = [need(info, key, f"{file} image {image_id}") for key in ("width", "height")]
        box = normalise_box(need(ann, "bbox", where), *size)
        per_image.setdefault(image_id, {}).setdefault(category, []).append((box, bool(ann.get("iscrowd", 0))))
    samples = []
    for image_id, info in image_rows.items():
        if image_id in per_image:
            image = finder(need(info, "file_name", f"{file} image {image_id}"))
            samples.extend(detection_samples(image_id, image, per_image[image_id]))
    return samples
