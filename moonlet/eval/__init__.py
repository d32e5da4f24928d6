"""Evaluation harness: benchmark loaders, the published metrics, a batched resumable runner
and the ``moonlet eval`` command. See docs/evaluation.md."""

from .benchmarks import BENCHMARKS, get_benchmark, load_samples
from .samples import DatasetError, Sample
from .scoring import score

__all__ = ["BENCHMARKS", "DatasetError", "Sample", "get_benchmark", "load_samples", "score"]
