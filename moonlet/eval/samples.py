"""The evaluation sample, lazy image references and the data-error type."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DatasetError(ValueError):
    """A data path or file that does not have the layout a benchmark expects."""


@dataclass
class Sample:
    """One thing to ask the model and the gold needed to score the answer.

    ``task``: query (``question``), detect / point (``question`` is the object name) or
    caption. ``answers``: gold strings or numbers. ``categories``: breakdown axis -> value
    (or list of values). ``target``: task-specific gold (boxes, points, objects...).
    """

    id: str
    image: Any
    task: str = "query"
    question: str = ""
    answers: list = field(default_factory=list)
    categories: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LazyImage:
    """An image read on demand (e.g. from a parquet row group); ``describe`` names it in errors."""

    read: Callable[[], Any]
    describe: str

    def __repr__(self) -> str:
        return f"LazyImage({self.describe})"


def resolve_image(image: Any) -> Any:
    """What ``Moondream`` accepts: a path, bytes or a PIL image."""
    if isinstance(image, LazyImage):
        return image.read()
    return image


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{what} not found: {path}")
    if not path.is_file():
        raise DatasetError(f"{what} is not a file: {path}")
    return path


def read_json(path: Path, what: str = "annotation file") -> Any:
    """Parse a JSON file, naming the file on failure."""
    require_file(path, what)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}); expected the {what}") from None


def read_jsonl(path: Path, what: str = "JSONL file") -> list[tuple[int, Any]]:
    """(line number, parsed object) for each non-empty line."""
    require_file(path, what)
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{number}: not valid JSON ({exc})") from None
    return rows


def need(row: Any, key: str, where: str) -> Any:
    """``row[key]``, or a DatasetError naming the file/row and the missing key."""
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if key not in row:
        present = ", ".join(sorted(map(str, row))[:12]) or "none"
        raise DatasetError(f"{where}: missing key {key!r} (keys present: {present})")
    return row[key]
