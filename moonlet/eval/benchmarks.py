"""The benchmark registry: how each is loaded, prompted and scored."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from . import hf_loaders, loaders
from .images import check_images
from .parquet import parquet_files
from .samples import DatasetError, Sample
from .synthetic import load_synthetic

SHORT = " Answer with a single word or phrase."


@dataclass(frozen=True)
class Benchmark:
    """``prompt`` is a template with ``{question}``; ``metric`` names the scorer in scoring.py."""

    name: str
    metric: str
    prompt: str
    max_tokens: int
    load_json: Callable[..., list[Sample]]
    load_parquet: Callable[..., list[Sample]] | None = None


BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark("vqav2", "vqa", "{question}" + SHORT, 16, loaders.load_vqav2, hf_loaders.vqav2),
        Benchmark("textvqa", "vqa", "{question}" + SHORT, 16, loaders.load_textvqa, hf_loaders.textvqa),
        Benchmark("gqa", "exact", "{question}" + SHORT, 16, loaders.load_gqa, hf_loaders.gqa),
        Benchmark("pope", "pope", "{question} Answer yes or no.", 4, loaders.load_pope, hf_loaders.pope),
        Benchmark(
            "docvqa",
            "anls",
            "{question} Answer with a short text span copied from the document.",
            48,
            loaders.load_docvqa,
            hf_loaders.docvqa,
        ),
        Benchmark(
            "chartqa",
            "relaxed",
            "{question} Answer with a single number or a short phrase.",
            24,
            loaders.load_chartqa,
            hf_loaders.chartqa,
        ),
        Benchmark("tallyqa", "count", "{question} Answer with a number.", 8, loaders.load_tallyqa, hf_loaders.tallyqa),
        Benchmark(
            "countbenchqa",
            "count",
            "{question} Answer with a number.",
            8,
            loaders.load_countbenchqa,
            hf_loaders.countbenchqa,
        ),
        Benchmark("coco", "map", "{question}", 0, loaders.load_coco, hf_loaders.coco),
        Benchmark("synthetic", "synthetic", "{question}", 64, load_synthetic),
    )
}
CAPTION_MAX_TOKENS = 256


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name.lower()]
    except KeyError:
        raise DatasetError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}") from None


def is_parquet(path: Path) -> bool:
    """A ``.parquet`` file, or a folder with parquet files and no JSON files of its own."""
    if path.is_file():
        return path.suffix == ".parquet"
    if not path.is_dir():
        return False
    has_json = any(p.suffix in (".json", ".jsonl") for p in path.iterdir())
    return not has_json and bool(parquet_files(path))


def load_samples(
    benchmark: Benchmark, path: Path, images: Path | None = None, box_format: str = "xywh", check: bool = True
) -> list[Sample]:
    """Samples of a benchmark from its official files or a parquet copy at ``path``; with
    ``check``, the first images must exist."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"data path not found: {path}")
    if benchmark.load_parquet is not None and is_parquet(path):
        load = benchmark.load_parquet
        if benchmark.name == "coco":
            load = partial(load, box_format=box_format)
        samples = load(path)
    else:
        samples = benchmark.load_json(path, images)
    if not samples:
        raise DatasetError(f"no {benchmark.name} samples found in {path}")
    repeated = [i for i, n in Counter(s.id for s in samples).items() if n > 1]
    if repeated:
        raise DatasetError(f"duplicate sample id {repeated[0]!r} in {path}")
    if check:
        check_images(samples)
    return samples


def render_prompt(benchmark: Benchmark, sample: Sample, template: str | None = None) -> str:
    """The text sent to the model: the template for questions, the object name otherwise."""
    if sample.task != "query":
        return sample.question
    return (template or benchmark.prompt).replace("{question}", sample.question)
