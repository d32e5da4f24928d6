"""One batch of records through a model, as output rows; shared by ``moonlet batch`` and the Ray
pipeline so both write the same rows.

A row is ``{"image": key, <the task's prompt>, <the result>, "model", "revision", "timing"}``:
caption → ``length``, ``caption``; query → ``question``, ``answer``; detect → ``object``,
``objects``; point → ``object``, ``points``. An input that fails gives ``{"image", "error",
"model", "revision", "timing"}`` instead. ``timing`` (seconds) is the only field that differs
between runs: ``decode_s`` for this image, ``infer_s`` for the engine batch it was part of.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .inputs import read_bytes

TIMING = "timing"


@dataclass(frozen=True)
class Task:
    kind: str = "caption"  # caption, query, detect or point
    length: str = "normal"
    question: str | None = None  # default question (query), a record's own overrides it
    object: str | None = None  # default object (detect, point)
    max_tokens: int | None = None
    max_objects: int | None = None
    model: str | None = None  # written into every row
    revision: str | None = None

    @classmethod
    def from_args(cls, args) -> Task:
        kind = "detect" if args.detect else "point" if args.point else "query" if args.question else "caption"
        return cls(
            kind,
            args.length,
            args.question,
            args.detect or args.point,
            args.max_tokens,
            args.max_objects,
            args.model,
            args.revision,
        )

    def prompt(self, record: dict) -> dict:
        """The row's prompt fields for this record."""
        if self.kind == "caption":
            return {"length": self.length}
        name = "question" if self.kind == "query" else "object"
        value = record.get(name) or getattr(self, name)
        if not value:
            raise ValueError(f"no {name} for {record['key']}: give one per row or on the command line")
        return {name: value}


def decode(record: dict) -> tuple[np.ndarray | None, str | None, float]:
    """(upright RGB pixels, None, seconds) or (None, error message, seconds); never raises."""
    from ..image import load_image, to_rgb

    start = time.perf_counter()
    try:
        data = record["bytes"] if record.get("bytes") is not None else read_bytes(record["image"])
        pixels, error = np.asarray(to_rgb(load_image(data))), None
    except Exception as exc:  # a bad or missing image is a row, not a failed job
        pixels, error = None, str(exc) or type(exc).__name__
    return pixels, error, time.perf_counter() - start


def infer_rows(model, task: Task, decoded: list[tuple[dict, np.ndarray | None, str | None, float]]) -> list[dict]:
    """Rows for (record, pixels, error, decode seconds) tuples, in order; text is decoded as one
    engine batch (one by one if the batch fails, so one bad input only costs its own row)."""
    start = time.perf_counter()
    results: dict[int, dict] = {}
    todo = []
    for i, (record, pixels, error, _) in enumerate(decoded):
        try:
            if error is not None:
                raise ValueError(error)
            todo.append((i, task.prompt(record), pixels))
        except ValueError as exc:
            results[i] = {"error": str(exc)}
    try:
        results.update(_run(model, task, todo))
    except Exception:
        for item in todo:
            try:
                results.update(_run(model, task, [item]))
            except Exception as exc:
                results[item[0]] = {"error": str(exc) or type(exc).__name__}
    infer_s = time.perf_counter() - start
    return [
        {
            "image": record["key"],
            **results[i],
            "model": task.model,
            "revision": task.revision,
            TIMING: {"decode_s": round(decode_s, 6), "infer_s": round(infer_s, 6)},
        }
        for i, (record, _, _, decode_s) in enumerate(decoded)
    ]


def _run(model, task: Task, todo: list[tuple[int, dict, np.ndarray]]) -> dict[int, dict]:
    if not todo:
        return {}
    settings = {"max_tokens": task.max_tokens} if task.max_tokens else None
    encoded = [model.encode_image(pixels) for _, _, pixels in todo]
    if task.kind == "caption":
        results = model.batch_caption(encoded, length=task.length, settings=settings)
    elif task.kind == "query":
        results = model.batch_query([(e, p["question"]) for e, (_, p, _) in zip(encoded, todo)], settings=settings)
    else:
        call = model.detect if task.kind == "detect" else model.point
        limit = {"max_objects": task.max_objects} if task.max_objects else None
        results = [call(e, p["object"], settings=limit) for e, (_, p, _) in zip(encoded, todo)]
    return {i: {**prompt, **result} for (i, prompt, _), result in zip(todo, results)}
