"""Writing converted rows as ``shard-NNNNN.jsonl`` files (the layout ``moonlet data generate``
writes) and ``meta.json``; rows are appended and flushed image by image."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import IO

from ..reader import MARKERS
from ..shards import shard_name, write_meta


def prepare_out(out: str | Path, force: bool, extra: tuple[str, ...] = ()) -> Path:
    """An empty output directory; with ``force``, the rows and meta.json of an earlier conversion
    (and ``extra`` globs) are removed first. Images are never deleted."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} is not empty (use --force to replace converted rows)")
        for pattern in ("shard-*.jsonl", "meta.json", *extra):
            for path in out.glob(pattern):
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def row_kind(row: dict) -> str:
    return next(kind for kind, keys in MARKERS.items() if keys & row.keys())


def relative_image(image: str | Path, out: Path) -> str:
    """The image path as a row in ``out`` names it: relative to ``out`` when the image lies under
    ``out``'s parent directory (so the two move together), else absolute."""
    image, out = os.path.abspath(image), os.path.abspath(out)
    if os.path.commonpath([image, os.path.dirname(out)]) == os.path.dirname(out):
        return os.path.relpath(image, out)
    return image


class RowWriter:
    """Groups of rows (one per image, or per narrative: the ``unit``) into shards of ``shard_size``
    groups each. ``meta.json`` says ``"complete": false`` until ``close``; then it adds the counts."""

    def __init__(self, out: Path, meta: dict, shard_size: int = 1000, unit: str = "images"):
        if shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        self.meta = {**meta, "shard_size": shard_size, "unit": unit, "complete": False}
        self.out, self.shard_size, self.unit = out, shard_size, unit
        self.groups = 0
        self.kinds: Counter = Counter()
        self.shards: list[str] = []
        self._file: IO[str] | None = None
        write_meta(out, self.meta)

    def add(self, image: str | Path, rows: list[dict]) -> None:
        if self.groups % self.shard_size == 0:
            self._close_file()
            self.shards.append(shard_name(len(self.shards)))
            self._file = open(self.out / self.shards[-1], "w", encoding="utf-8")
        path = relative_image(image, self.out)
        self._file.write("".join(json.dumps({"image": path, **row}, ensure_ascii=False) + "\n" for row in rows))
        self._file.flush()
        self.groups += 1
        self.kinds.update(row_kind(row) for row in rows)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self, **extra) -> dict:
        self._close_file()
        self.meta.update(
            extra,
            **{self.unit: self.groups},
            rows=sum(self.kinds.values()),
            kinds=dict(sorted(self.kinds.items())),
            shards=self.shards,
            complete=True,
        )
        write_meta(self.out, self.meta)
        return self.meta

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._close_file()
