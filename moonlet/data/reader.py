"""Streaming, validating reader for dataset rows (generated shards or hand-written JSONL).

A row is a JSON object on one line with ``image`` (a path relative to the JSONL file's directory,
or absolute) and exactly one of: a caption, a question with its answer, a detect target
(``object`` + ``boxes``) or a point target (``object`` + ``points``). Coordinates are normalised
to 0..1 with the origin at the top left.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LENGTHS = ("short", "normal", "long")
KINDS = {
    "caption": ({"caption"}, {"length", "objects"}),
    "query": ({"question", "answer"}, {"type"}),
    "detect": ({"object", "boxes"}, set()),
    "point": ({"object", "points"}, set()),
}
MARKERS = {"caption": {"caption"}, "query": {"question", "answer"}, "detect": {"boxes"}, "point": {"points"}}
COMMON = {"image", "scene"}


class DataFormatError(ValueError):
    """A row that does not follow the format; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class Row:
    image: Path  # resolved image path
    kind: str  # caption | query | detect | point
    source: str  # "file:line"
    caption: str | None = None
    length: str | None = None
    question: str | None = None
    answer: str | None = None
    type: str | None = None
    object: str | None = None
    boxes: tuple[tuple[float, float, float, float], ...] | None = None
    points: tuple[tuple[float, float], ...] | None = None
    objects: tuple[str, ...] | None = None
    scene: int | None = None


def _text(row: dict, key: str, required: bool = True) -> str | None:
    value = row.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'"{key}" must be a non-empty string, got {json.dumps(value)}')
    return value


def _coords(row: dict, key: str, size: int) -> tuple[tuple[float, ...], ...]:
    value = row[key]
    if not isinstance(value, list):
        raise ValueError(f'"{key}" must be a list, got {json.dumps(value)}')
    out = []
    for n, item in enumerate(value):
        ok = (
            isinstance(item, list)
            and len(item) == size
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in item)
        )
        if not ok:
            raise ValueError(f'"{key}"[{n}] must be a list of {size} numbers, got {json.dumps(item)}')
        if not all(0.0 <= v <= 1.0 for v in item):
            raise ValueError(f'"{key}"[{n}] has a value outside 0..1 (coordinates are normalised): {item}')
        if size == 4 and (item[0] > item[2] or item[1] > item[3]):
            raise ValueError(f'"{key}"[{n}] needs x_min <= x_max and y_min <= y_max, got {item}')
        out.append(tuple(float(v) for v in item))
    return tuple(out)


def _kind(row: dict) -> str:
    present = [k for k, marks in MARKERS.items() if marks & row.keys()]
    if "object" in row and not ({"boxes", "points"} & row.keys()):
        raise ValueError('"object" needs "boxes" (detect) or "points" (point)')
    if "boxes" in row and "points" in row:
        raise ValueError('a row has either "boxes" or "points", not both')
    if len(present) != 1:
        what = " and ".join(present) if present else "none"
        raise ValueError(f"a row must be exactly one of caption, question, detect or point; found {what}")
    kind = present[0]
    need, optional = KINDS[kind]
    missing = sorted(need - row.keys())
    if missing:
        raise ValueError(f"{kind} row is missing " + ", ".join(f'"{k}"' for k in missing))
    unknown = sorted(row.keys() - need - optional - COMMON)
    if unknown:
        allowed = ", ".join(sorted(need | optional | COMMON))
        raise ValueError(f"unknown key(s) {', '.join(repr(k) for k in unknown)} in a {kind} row (allowed: {allowed})")
    return kind


def parse_row(row: object, base: Path, source: str = "", check_images: bool = True) -> Row:
    """Validate one decoded row; raises ``ValueError`` naming the problem."""
    if not isinstance(row, dict):
        raise ValueError(f"a row must be a JSON object, got {type(row).__name__}")
    image = Path(_text(row, "image"))
    image = image if image.is_absolute() else base / image
    kind = _kind(row)
    if check_images and not image.is_file():
        raise ValueError(f"image not found: {image}")
    scene = row.get("scene")
    if scene is not None and (not isinstance(scene, int) or isinstance(scene, bool)):
        raise ValueError(f'"scene" must be an integer, got {json.dumps(scene)}')
    fields: dict = {"image": image, "kind": kind, "source": source, "scene": scene}
    if kind == "caption":
        fields["caption"] = _text(row, "caption")
        length = row.get("length", "normal")
        if length not in LENGTHS:
            raise ValueError(f'"length" must be one of {", ".join(LENGTHS)}, got {json.dumps(length)}')
        fields["length"] = length
        objects = row.get("objects")
        if objects is not None:
            if not isinstance(objects, list) or not all(isinstance(o, str) for o in objects):
                raise ValueError('"objects" must be a list of strings')
            fields["objects"] = tuple(objects)
    elif kind == "query":
        fields.update(question=_text(row, "question"), answer=_text(row, "answer"), type=_text(row, "type", False))
    else:
        fields["object"] = _text(row, "object")
        key = "boxes" if kind == "detect" else "points"
        fields[key] = _coords(row, key, 4 if kind == "detect" else 2)
    return Row(**fields)


def jsonl_files(path: str | Path) -> list[Path]:
    """A single file, or every ``*.jsonl`` directly inside a directory, sorted by name."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise DataFormatError(f"{path}: no .jsonl files in this directory")
        return files
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file or directory")
    return [path]


def iter_rows(path: str | Path, check_images: bool = True) -> Iterator[Row]:
    """Rows of a dataset directory or JSONL file, one at a time; blank lines are skipped.

    Raises ``DataFormatError`` ("file:line: problem") at the first bad row."""
    for file in jsonl_files(path):
        with open(file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                source = f"{file}:{number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFormatError(f"{source}: invalid JSON: {exc.msg} (column {exc.colno})") from None
                try:
                    yield parse_row(row, file.parent, source, check_images)
                except ValueError as exc:
                    raise DataFormatError(f"{source}: {exc}") from None
