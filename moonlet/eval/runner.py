"""Running the model over samples: batched queries, greedy settings, resumable JSONL output."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..progress import progress_bar
from .benchmarks import CAPTION_MAX_TOKENS, Benchmark, render_prompt
from .samples import DatasetError, Sample, resolve_image


def read_predictions(path: Path) -> dict[str, Any]:
    """id -> prediction from a predictions JSONL file (later lines win; a torn last line from an
    interrupted run is ignored)."""
    predictions: dict[str, Any] = {}
    if not path.is_file():
        return predictions
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            predictions[str(row["id"])] = row["prediction"]
        except (json.JSONDecodeError, KeyError, TypeError):
            if number == len(lines):
                break
            raise DatasetError(f'{path}:{number}: not a prediction row ({{"id", "prediction"}})') from None
    return predictions


def drop_torn_tail(path: Path) -> None:
    """Cut a last line left without its newline by an interrupted run."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def _boxes(result: dict) -> list[list[float]]:
    return [[o["x_min"], o["y_min"], o["x_max"], o["y_max"]] for o in result["objects"]]


def _points(result: dict) -> list[list[float]]:
    return [[p["x"], p["y"]] for p in result["points"]]


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_one(model, sample: Sample, prompt: str, max_tokens: int, max_objects: int | None) -> Any:
    """Detect, point or caption one sample (queries go through :func:`predict` in batches)."""
    image = resolve_image(sample.image)
    located = {"max_objects": max_objects} if max_objects else None
    if sample.task == "detect":
        return _boxes(model.detect(image, prompt, settings=located))
    if sample.task == "point":
        return _points(model.point(image, prompt, settings=located))
    if sample.task == "caption":
        length = sample.target.get("length", "normal")
        return model.caption(image, length, settings={"temperature": 0, "max_tokens": max_tokens})["caption"]
    return model.query(image, prompt, settings={"temperature": 0, "max_tokens": max_tokens})["answer"]


def predict(
    model,
    benchmark: Benchmark,
    samples: list[Sample],
    out_file: Path,
    batch_size: int = 8,
    max_tokens: int | None = None,
    template: str | None = None,
    max_objects: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict every sample not yet in ``out_file`` and append the rows; returns all predictions.

    Questions are answered ``batch_size`` at a time with ``model.batch_query`` and greedy
    decoding; each finished chunk is flushed so an interrupted run resumes where it stopped.
    """
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    tokens = max_tokens or benchmark.max_tokens
    drop_torn_tail(out_file)
    done = read_predictions(out_file)
    todo = [s for s in samples if s.id not in done]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    greedy = {"temperature": 0, "max_tokens": tokens}
    with (
        open(out_file, "a", encoding="utf-8") as handle,
        progress_bar(len(samples), len(samples) - len(todo), benchmark.name, progress, unit="q") as bar,
    ):
        for chunk in _chunks(todo, batch_size):
            prompts = [render_prompt(benchmark, s, template) for s in chunk]
            queries = [i for i, s in enumerate(chunk) if s.task == "query"]
            outputs: dict[int, Any] = {}
            if queries:
                answers = model.batch_query(
                    [(resolve_image(chunk[i].image), prompts[i]) for i in queries], settings=greedy
                )
                outputs.update((i, a["answer"]) for i, a in zip(queries, answers))
            for i, sample in enumerate(chunk):
                if i not in outputs:
                    limit = (max_tokens or CAPTION_MAX_TOKENS) if sample.task == "caption" else tokens
                    outputs[i] = predict_one(model, sample, prompts[i], limit, max_objects)
            for i, sample in enumerate(chunk):
                row = {"id": sample.id, "task": sample.task, "prompt": prompts[i], "prediction": outputs[i]}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                done[sample.id] = outputs[i]
            handle.flush()
            bar.update(len(chunk))
    return done
