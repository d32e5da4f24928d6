"""Synthetic training data: scenes of shapes and text, their ground truth, and captions,
questions and detect/point targets written as JSONL shards; plus a validating reader.

    from moonlet.data import generate_dataset, iter_rows
    generate_dataset("data/synth", count=1000, seed=0)
    for row in iter_rows("data/synth"): ...
"""

from __future__ import annotations

from .annotate import annotate
from .config import AnnotationConfig, SceneConfig
from .generate import GENERATOR_VERSION, Example, iter_examples, make_example
from .layout import sample_scene
from .reader import DataFormatError, Row, iter_rows, parse_row
from .render import draw, render
from .scene import Scene, SceneObject, SceneText
from .shards import ShardWriter, generate_dataset

__all__ = [
    "AnnotationConfig",
    "SceneConfig",
    "Scene",
    "SceneObject",
    "SceneText",
    "Example",
    "GENERATOR_VERSION",
    "sample_scene",
    "draw",
    "render",
    "annotate",
    "make_example",
    "iter_examples",
    "ShardWriter",
    "generate_dataset",
    "DataFormatError",
    "Row",
    "iter_rows",
    "parse_row",
]
