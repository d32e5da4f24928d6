"""One example per scene index: ground truth, PNG bytes and annotation rows, produced lazily."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .annotate import annotate
from .config import AnnotationConfig, SceneConfig
from .layout import sample_scene
from .render import png_bytes, render
from .scene import Scene

GENERATOR_VERSION = "2"  # 2: wider scenes (sizes, outlines, flat colours, pure backgrounds, fonts, degradations)


@dataclass(frozen=True)
class Example:
    index: int
    scene: Scene
    png: bytes
    rows: list[dict]  # without the "image" key


def make_example(
    seed: int, index: int, scene_config: SceneConfig | None = None, annotation_config: AnnotationConfig | None = None
) -> Example:
    """Scene ``index`` of ``seed``, rendered and annotated; depends on nothing else."""
    scene_config = scene_config or SceneConfig()
    scene = sample_scene(seed, index, scene_config)
    png = png_bytes(render(scene, scene_config))
    return Example(index, scene, png, annotate(scene, annotation_config, scene_config))


def iter_examples(
    seed: int,
    count: int,
    start: int = 0,
    scene_config: SceneConfig | None = None,
    annotation_config: AnnotationConfig | None = None,
) -> Iterator[Example]:
    """Examples ``start .. start + count - 1``, one at a time."""
    for index in range(start, start + count):
        yield make_example(seed, index, scene_config, annotation_config)
