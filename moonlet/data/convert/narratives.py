"""Localized Narratives (the official JSONL: ``dataset_id``, ``image_id``, ``annotator_id``,
``caption``, ``timed_caption``, ``traces``) to rows: the narrative as a caption, and point rows
for the words spoken while the annotator's mouse rested on something.

Point heuristic, per timed utterance:
1. the utterance, lower-cased and stripped of punctuation, must be one word of letters, at least
   3 long, not a stop word (function words, narration fillers such as "image" or "see", colours,
   sizes, places such as "left" or "background", common verbs) and not plural-looking (ending in
   "s" but not "ss", "us" or "is"): a point row lists every instance, a trace shows one place;
2. the trace points with ``start_time <= t <= end_time`` that lie inside the image (x and y in
   0..1) are taken; at least ``MIN_POINTS`` of them, with a spread (standard deviation of x and
   of y) of at most ``MAX_SPREAD``, or the utterance is skipped;
3. their mean, rounded to 4 places and clipped to 0..1, is the point.
Mentions of the same word in one narrative become one row; a later mention within ``MERGE``
of an earlier point is dropped as the same place. The rows are weak labels: the annotator
pointed at one thing while saying the word, and other instances may be missing.

Nothing here is random: the output depends on the input only (``seed`` is recorded in meta.json
for symmetry with the other converters).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

from .coco import clean_caption
from .output import RowWriter, prepare_out

CONVERTER_VERSION = "1"
MIN_LENGTH, MIN_POINTS, MAX_SPREAD, MERGE = 3, 2, 0.15, 0.05
STOP_WORDS = frozenset(
    """
a an the this that these those there here it its is are was were be been being am and or but of in on at to
from with without by for as into onto over under above below behind near next beside between through
we can see could i you he she they them his her their our my me us some any many few one two three also
image picture photo photograph frame view scene side part area thing things something which who what
where when while then very just only too more most other another each all both like looks look looking
seems seem visible see seen shown showing has have having there's we're it's left right top bottom middle
center centre corner background foreground front back up down around edge ends end
black white red green blue yellow orange purple pink brown gray grey color colour colored coloured
small big large little tall short long dark light bright
standing sitting holding wearing walking lying placed kept hanging attached
""".split()
)
DEFAULT_PATTERN = "{image_id}.jpg"
COCO_PATTERN = "{image_id:0>12}.jpg"  # COCO file names are the id padded to 12 digits


def object_word(utterance: str) -> str | None:
    """The utterance as an object name, or None when it is not a plausible one (rule 1)."""
    word = re.sub(r"[^\w\s]", "", utterance).strip().lower()
    if not re.fullmatch(r"[a-z]+", word) or len(word) < MIN_LENGTH or word in STOP_WORDS:
        return None
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return None
    return word


def span_point(traces: list[list[dict]], start: float, end: float) -> list[float] | None:
    """The mean in-image trace point recorded during ``[start, end]`` (rules 2 and 3)."""
    pts = [
        (p["x"], p["y"])
        for segment in traces
        for p in segment
        if start <= p["t"] <= end and 0.0 <= p["x"] <= 1.0 and 0.0 <= p["y"] <= 1.0
    ]
    if len(pts) < MIN_POINTS:
        return None
    mean = [sum(v) / len(pts) for v in zip(*pts)]
    spread = [math.sqrt(sum((v - m) ** 2 for v in axis) / len(pts)) for axis, m in zip(zip(*pts), mean)]
    if max(spread) > MAX_SPREAD:
        return None
    return [min(max(round(v, 4), 0.0), 1.0) for v in mean]


def narrative_rows(record: dict) -> list[dict]:
    """The rows of one narrative (without ``image``): its caption, then point rows by first mention."""
    caption = record.get("caption", "").strip()
    rows = [{"caption": clean_caption(caption), "length": "normal"}] if caption else []
    points: dict[str, list[list[float]]] = {}
    for utterance in record.get("timed_caption", []):
        word = object_word(utterance["utterance"])
        point = span_point(record.get("traces", []), utterance["start_time"], utterance["end_time"]) if word else None
        if point is None:
            continue
        seen = points.setdefault(word, [])
        if all(math.dist(point, p) >= MERGE for p in seen):
            seen.append(point)
    return rows + [{"object": word, "points": pts} for word, pts in points.items()]


def iter_narratives(path: str | Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: invalid JSON: {exc.msg}") from None


def image_path(images: str | Path, record: dict, pattern: str | None = None) -> Path:
    if pattern is None:
        pattern = COCO_PATTERN if "coco" in str(record.get("dataset_id", "")) else DEFAULT_PATTERN
    return Path(images) / pattern.format(image_id=str(record["image_id"]), dataset_id=record.get("dataset_id", ""))


def convert_narratives(
    narratives: str | Path,
    images: str | Path,
    out: str | Path,
    seed: int = 0,
    pattern: str | None = None,
    shard_size: int = 1000,
    force: bool = False,
) -> dict:
    """Convert a Localized Narratives JSONL file into ``out`` (one row group per narrative);
    returns meta.json's content. Narratives whose image file is missing are skipped and counted."""
    out = prepare_out(out, force)
    meta = {
        "generator": "moonlet.data.convert.narratives",
        "version": CONVERTER_VERSION,
        "seed": seed,
        "narratives_file": str(narratives),
        "images_dir": str(images),
        "pattern": pattern,
        "heuristic": {"min_length": MIN_LENGTH, "min_points": MIN_POINTS, "max_spread": MAX_SPREAD, "merge": MERGE},
    }
    skipped = 0
    with RowWriter(out, meta, shard_size, unit="narratives") as writer:
        for record in iter_narratives(narratives):
            path = image_path(images, record, pattern)
            if not path.is_file():
                skipped += 1
                continue
            writer.add(path, narrative_rows(record))
        return writer.close(missing_images=skipped)
