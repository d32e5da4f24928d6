"""``moonlet batch`` on one machine: caption, query, detect or point every image of a folder, glob
or manifest through the engine's batching, writing JSONL; a rerun skips the images already written
(resumable). With ``--ray`` the same rows come from the Ray Data pipeline (``moonlet.scale``)."""

from __future__ import annotations

from ..progress import progress_bar
from .inputs import list_records
from .output import ResumableJsonl
from .rows import Task, decode, infer_rows


def run_batch(model, args) -> int:
    """Write the rows of ``args.source`` still missing from ``args.out``; 1 if any row is an error, else 0."""
    records = list_records(args.source, args.image_column, args.key_column)
    task = Task.from_args(args)
    failures = 0
    with ResumableJsonl(args.out) as output:
        todo = [record for record in records if record["key"] not in output.done]
        with progress_bar(len(records), len(records) - len(todo), "batch", unit="image") as bar:
            for start in range(0, len(todo), args.batch_size):
                chunk = todo[start : start + args.batch_size]
                rows = infer_rows(model, task, [(record, *decode(record)) for record in chunk])
                output.write(rows)
                failures += sum("error" in row for row in rows)
                bar.update(len(chunk))
    return 1 if failures else 0
