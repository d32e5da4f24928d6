"""The resumable JSONL output of ``moonlet batch``: one row per line, keyed by its ``"image"``.

Rows are appended a batch at a time and flushed, so an interrupted run loses at most the line it
was writing; a rerun reads the keys already written, cuts a torn last line and appends the rest."""

from __future__ import annotations

import json
from pathlib import Path


def done_keys(path: Path) -> set[str]:
    """Keys already written; a torn last line (an interrupted write) is ignored, its input is redone."""
    if not path.is_file():
        return set()
    keys = set()
    for line in path.read_text().splitlines():
        try:
            keys.add(json.loads(line)["image"])
        except (json.JSONDecodeError, KeyError):
            continue
    return keys


def drop_torn_line(path: Path) -> None:
    """Cut a partial last line (no newline yet) left by an interrupted run."""
    if path.is_file():
        text = path.read_text()
        if text and not text.endswith("\n"):
            path.write_text(text[: text.rfind("\n") + 1])


class ResumableJsonl:
    """``with ResumableJsonl(path) as output``: ``output.done`` holds the keys an earlier run wrote,
    ``output.write(rows)`` appends rows and flushes them."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.done = done_keys(self.path)
        self._handle = None

    def __enter__(self) -> ResumableJsonl:
        drop_torn_line(self.path)
        self._handle = self.path.open("a")
        return self

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()

    def __exit__(self, *exc) -> None:
        self._handle.close()
        self._handle = None
