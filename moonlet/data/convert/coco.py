"""COCO (official ``instances_*.json`` and optionally ``captions_*.json``) to rows, per image:
captions, count and yes/no existence questions, detect rows (every box of a category) and point
rows (box centres).

Crowd regions (``iscrowd: 1``) cover an unknown number of instances, so a category with one in
an image gets no count question, detect row or point row there (its box list would be
incomplete); it still counts as present for existence questions and is never drawn as absent.
Absent categories are those with no annotation at all in the image; COCO labels its categories
exhaustively, so "0" and "No" about them are as honest as COCO itself.

Wording, question order and the absent (distractor) categories come from
``scene_rng(seed, image_id, 1)``, so an image's rows depend only on the seed and that image.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..config import AnnotationConfig
from ..layout import scene_rng
from ..phrasing import Phraser, article
from ..questions import MAKERS
from .names import plural, singular
from .output import RowWriter, prepare_out

CONVERTER_VERSION = "1"
QUESTION_KINDS = ("count", "exists")  # weights and absent shares as in the synthetic pipeline (MAKERS)


def load_json(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def clean_caption(text: str) -> str:
    """Whitespace collapsed, first letter capitalised, a full stop added when none ends it."""
    text = re.sub(r"\s+", " ", text).strip()
    if text and text[-1] not in ".!?":
        text += "."
    return text[:1].upper() + text[1:]


def norm_box(bbox: list[float], width: int, height: int) -> list[float]:
    """COCO ``[x, y, w, h]`` in pixels (pixel edges) to ``[x_min, y_min, x_max, y_max]`` in 0..1
    (clipped to the image; not rounded)."""
    x, y, w, h = bbox
    x0, y0 = min(max(x / width, 0.0), 1.0), min(max(y / height, 0.0), 1.0)
    return [x0, y0, min(max((x + w) / width, x0), 1.0), min(max((y + h) / height, y0), 1.0)]


def _rounded(values) -> list[float]:
    return [round(v, 4) for v in values]


def _centre(box: list[float]) -> list[float]:
    return [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]


class CocoImage:
    """One image's facts: category name -> normalised boxes (non-crowd) and the crowd categories."""

    def __init__(self, image: dict, annotations: list[dict], categories: dict[int, str]):
        self.id = image["id"]
        self.boxes: dict[str, list[list[float]]] = {}
        self.crowd: set[str] = set()
        for ann in annotations:
            name = categories[ann["category_id"]]
            if ann.get("iscrowd", 0):
                self.crowd.add(name)
                self.boxes.setdefault(name, [])
            else:
                self.boxes.setdefault(name, []).append(norm_box(ann["bbox"], image["width"], image["height"]))

    @property
    def present(self) -> list[str]:
        return sorted(self.boxes)

    @property
    def countable(self) -> list[str]:
        """Categories whose every instance has its own box."""
        return [name for name in self.present if name not in self.crowd]


def questions(img: CocoImage, absent: list[str], ph: Phraser, count: int, absent_share: float) -> list[dict]:
    """Up to ``count`` distinct count/exists questions, kinds drawn by the synthetic pipeline's
    weights; about ``absent_share`` (count) and twice that (exists) ask about an absent category."""
    weights = np.array([MAKERS[kind][1] for kind in QUESTION_KINDS])
    rows: list[dict] = []
    asked: set[tuple[str, str]] = set()
    for _ in range(count * 8):
        if len(rows) >= count:
            break
        kind = QUESTION_KINDS[int(ph.rng.choice(len(QUESTION_KINDS), p=weights / weights.sum()))]
        is_absent = ph.chance(min(1.0, absent_share * MAKERS[kind][2]))
        pool = absent if is_absent else img.countable if kind == "count" else img.present
        pool = [name for name in pool if (kind, name) not in asked]
        if not pool:
            continue
        name = ph.pick(pool)
        asked.add((kind, name))
        if kind == "count":
            n = 0 if is_absent else len(img.boxes[name])
            rows.append({"question": ph.question("count", p=plural(name)), "answer": str(n), "type": "count"})
        else:
            one = singular(name)
            text = ph.question("exists", s=article(one), p=plural(name), p1=one)
            rows.append({"question": text, "answer": "No" if is_absent else "Yes", "type": "exists"})
    return rows


def image_rows(
    img: CocoImage, captions: list[str], names: list[str], seed: int, count: int, config: AnnotationConfig | None = None
) -> list[dict]:
    """Every row of one image (without ``image``): captions, questions, detect rows, point rows.

    Detect and point rows cover every countable category, plus one absent category each (empty list)."""
    cfg = config or AnnotationConfig()
    ph = Phraser(scene_rng(seed, img.id, 1), cfg.prefix_share)
    absent = [name for name in names if name not in img.boxes]
    rows = [{"caption": clean_caption(text), "length": "short"} for text in captions if text.strip()]
    rows += questions(img, absent, ph, count, cfg.absent_share)
    for key, convert in (("boxes", _rounded), ("points", lambda box: _rounded(_centre(box)))):
        targets = [(name, [convert(b) for b in sorted(img.boxes[name], key=_centre)]) for name in img.countable]
        if absent:
            targets.append((ph.pick(absent), []))
        rows += [{"object": name, key: found} for name, found in targets]
    return [{**row, "scene": img.id} for row in rows]


def iter_coco(instances: dict, captions: dict | None = None) -> Iterator[tuple[dict, CocoImage, list[str]]]:
    """(image entry, facts, caption texts) for each image, in the instances file's order."""
    categories = {c["id"]: c["name"] for c in instances["categories"]}
    annotations: dict[int, list[dict]] = {}
    for ann in instances.get("annotations", []):
        annotations.setdefault(ann["image_id"], []).append(ann)
    texts: dict[int, list[str]] = {}
    for ann in (captions or {}).get("annotations", []):
        texts.setdefault(ann["image_id"], []).append(ann["caption"])
    for image in instances["images"]:
        yield image, CocoImage(image, annotations.get(image["id"], []), categories), texts.get(image["id"], [])


def convert_coco(
    instances: str | Path,
    images: str | Path,
    out: str | Path,
    captions: str | Path | None = None,
    seed: int = 0,
    questions_per_image: int = 6,
    shard_size: int = 1000,
    force: bool = False,
) -> dict:
    """Convert a COCO split into ``out``; returns meta.json's content. Images whose file is missing
    under ``images`` are skipped and counted (``missing_images``)."""
    if seed < 0 or questions_per_image < 0:
        raise ValueError("seed and questions must be non-negative")
    data = load_json(instances)
    names = sorted({c["name"] for c in data["categories"]})
    out = prepare_out(out, force)
    meta = {
        "generator": "moonlet.data.convert.coco",
        "version": CONVERTER_VERSION,
        "seed": seed,
        "instances": str(instances),
        "captions": str(captions) if captions else None,
        "images_dir": str(images),
        "questions": questions_per_image,
        "categories": names,
    }
    skipped = 0
    with RowWriter(out, meta, shard_size) as writer:
        for image, img, texts in iter_coco(data, load_json(captions) if captions else None):
            path = Path(images) / image["file_name"]
            if not path.is_file():
                skipped += 1
                continue
            writer.add(path, image_rows(img, texts, names, seed, questions_per_image))
        return writer.close(missing_images=skipped)
