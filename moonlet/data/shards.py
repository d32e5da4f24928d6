"""Writing examples to disk as they arrive: ``images/NNNNNN.png``, ``shard-NNNNN.jsonl``,
optional ground truth under ``truth/``, and ``meta.json``.

Scene ``i`` goes to shard ``i // shard_size``, so shard contents depend only on scene indices and
separate runs over disjoint index ranges produce the same files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import IO

import numpy as np
import PIL

from .config import AnnotationConfig, SceneConfig
from .fonts import available_fonts
from .generate import GENERATOR_VERSION, Example, iter_examples


def image_name(index: int) -> str:
    return f"images/{index:06d}.png"


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.jsonl"


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


class ShardWriter:
    """Appends each example's image and rows immediately (flushed), switching shard files by index."""

    def __init__(self, out_dir: str | Path, shard_size: int = 1000, truth: bool = True):
        if shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        self.out = Path(out_dir)
        self.shard_size = shard_size
        self.truth = truth
        self.rows = 0
        self.scenes = 0
        self.shards: list[str] = []
        self._shard: int | None = None
        self._files: tuple[IO[str], IO[str] | None] | None = None
        (self.out / "images").mkdir(parents=True, exist_ok=True)
        if truth:
            (self.out / "truth").mkdir(exist_ok=True)

    def _switch(self, shard: int) -> None:
        self._close_files()
        name = shard_name(shard)
        mode = "a" if name in self.shards else "w"
        if name not in self.shards:
            self.shards.append(name)
        rows = open(self.out / name, mode, encoding="utf-8")
        truth = open(self.out / "truth" / name, mode, encoding="utf-8") if self.truth else None
        self._files, self._shard = (rows, truth), shard

    def write(self, example: Example) -> None:
        shard = example.index // self.shard_size
        if shard != self._shard:
            self._switch(shard)
        image = image_name(example.index)
        (self.out / image).write_bytes(example.png)
        rows, truth = self._files
        rows.write("".join(_dumps({"image": image, **row}) + "\n" for row in example.rows))
        rows.flush()
        if truth is not None:
            truth.write(_dumps({"image": image, **example.scene.to_dict()}) + "\n")
            truth.flush()
        self.rows += len(example.rows)
        self.scenes += 1

    def _close_files(self) -> None:
        if self._files is not None:
            for f in self._files:
                if f is not None:
                    f.close()
            self._files, self._shard = None, None

    def close(self) -> None:
        self._close_files()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _clear(out: Path) -> None:
    for pattern in ("shard-*.jsonl", "truth/shard-*.jsonl", "images/*.png", "meta.json"):
        for path in out.glob(pattern):
            path.unlink()


def write_meta(out: Path, meta: dict) -> None:
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / "meta.json")


def generate_dataset(
    out_dir: str | Path,
    count: int,
    seed: int = 0,
    start: int = 0,
    shard_size: int = 1000,
    scene_config: SceneConfig | None = None,
    annotation_config: AnnotationConfig | None = None,
    truth: bool = True,
    overwrite: bool = False,
    examples: Iterable[Example] | None = None,
) -> dict:
    """Generate scenes ``start .. start + count - 1`` of ``seed`` into ``out_dir``; returns meta.json's content.

    ``examples`` replaces the built-in generator (it must yield those indices)."""
    if count < 0 or start < 0 or seed < 0:
        raise ValueError("count, start and seed must be non-negative")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty (use --force to replace a generated dataset)")
        _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    scene_config = scene_config or SceneConfig()
    annotation_config = annotation_config or AnnotationConfig()
    meta = {
        "generator": "moonlet.data",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "start": start,
        "count": count,
        "image_size": [scene_config.width, scene_config.height],
        "shard_size": shard_size,
        "fonts": list(scene_config.fonts or available_fonts()),
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "scene_config": asdict(scene_config),
        "annotation_config": asdict(annotation_config),
        "complete": False,
    }
    meta = json.loads(json.dumps(meta))  # plain JSON types, as a reader of meta.json sees them
    write_meta(out, meta)
    if examples is None:
        examples = iter_examples(seed, count, start, scene_config, annotation_config)
    with ShardWriter(out, shard_size, truth) as writer:
        for example in examples:
            writer.write(example)
    meta.update(scenes=writer.scenes, rows=writer.rows, shards=writer.shards, complete=True)
    write_meta(out, meta)
    return meta
