"""``moonlet batch``: caption, query, detect or point every image of a folder, glob or manifest
through the engine's batching, writing JSONL; a rerun skips the images already written (resumable).
With ``--ray`` the same rows come from the Ray Data pipeline (``moonlet.scale.pipeline``)."""

from __future__ import annotations

import json
from pathlib import Path

from .inputs import IMAGE_SUFFIXES, list_images, list_records  # noqa: F401  (re-exported)
from .rows import Task, decode, infer_rows


def _drop_torn_line(out: Path) -> None:
    """An interrupted run may leave a partial last line: cut it, its image is redone."""
    if out.is_file():
        text = out.read_text()
        if text and not text.endswith("\n"):
            out.write_text(text[: text.rfind("\n") + 1])


def done_keys(out: Path) -> set[str]:
    """Keys already written; a torn last line (interrupted write) is ignored and rewritten."""
    if not out.is_file():
        return set()
    keys = set()
    for line in out.read_text().splitlines():
        try:
            keys.add(json.loads(line)["image"])
        except (json.JSONDecodeError, KeyError):
            continue
    return keys


def run_batch(model, args) -> int:
    out = Path(args.out)
    records = list_records(args.source, args.image_column, args.key_column)
    done = done_keys(out)
    todo = [r for r in records if r["key"] not in done]
    _drop_torn_line(out)
    progress = _progress(len(records), len(records) - len(todo))
    task = Task.from_args(args)
    failures = 0
    with out.open("a") as handle:
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start : start + args.batch_size]
            rows = infer_rows(model, task, [(record, *decode(record)) for record in chunk])
            for row in rows:
                failures += "error" in row
                handle.write(json.dumps(row) + "\n")
            handle.flush()
            if progress is not None:
                progress.update(len(chunk))
    if progress is not None:
        progress.close()
    return 1 if failures else 0


def _progress(total: int, initial: int):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="image", desc="batch")
