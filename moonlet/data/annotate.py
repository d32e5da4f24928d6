"""Rows for one scene: captions, question-answer pairs, detect and point targets.

Wording is drawn from the scene's annotation stream (``scene_rng(seed, index, 1)``), separate from
the layout stream, so changing phrasing never changes images.
"""

from __future__ import annotations

import numpy as np

from .captions import caption
from .config import AnnotationConfig, SceneConfig
from .facts import Facts
from .layout import scene_rng
from .phrasing import Phraser
from .questions import MAKERS
from .scene import Scene
from .targets import boxes, choose, points


def questions(
    f: Facts, ph: Phraser, shapes, count: int, absent_share: float, types: tuple[str, ...] = tuple(MAKERS)
) -> list[dict]:
    """Up to ``count`` distinct questions (fewer for scenes with one or two objects), ``types``
    drawn by weight among those the scene supports, at most a third of them of one type (of
    fewer types, an even share each)."""
    names = [name for name in MAKERS if name in types]
    weights = np.array([MAKERS[n][1] for n in names])
    rows: list[dict] = []
    seen: set[str] = set()
    answered: set[tuple[str, str]] = set()
    per_type: dict[str, int] = {}
    count = min(count, 4 + 2 * len(f.objects))  # small scenes support fewer distinct questions
    cap = max(2, -(-count // min(3, len(names))))
    for _ in range(count * 8):
        if len(rows) >= count:
            break
        kind = names[int(ph.rng.choice(len(names), p=weights / weights.sum()))]
        maker, _, absent_factor = MAKERS[kind]
        if per_type.get(kind, 0) >= cap:
            continue
        qa = maker(f, ph, shapes, ph.chance(min(1.0, absent_share * absent_factor)))
        if qa is None or qa[0].lower() in seen:
            continue
        if (kind, qa[1]) in answered and ph.chance(0.6):
            continue  # most likely the same question reworded
        seen.add(qa[0].lower())
        answered.add((kind, qa[1]))
        per_type[kind] = per_type.get(kind, 0) + 1
        rows.append({"question": qa[0], "answer": qa[1], "type": kind})
    return rows


def annotate(
    scene: Scene, config: AnnotationConfig | None = None, scene_config: SceneConfig | None = None
) -> list[dict]:
    """Every row for ``scene`` (without the ``image`` key), in a fixed order: captions, questions,
    detect targets, point targets."""
    cfg = config or AnnotationConfig()
    shapes = (scene_config or SceneConfig()).shapes
    ph = Phraser(scene_rng(scene.seed, scene.index, 1), cfg.prefix_share, cfg.casual_share)
    f = Facts(scene, cfg.margin, cfg.relations)
    rows: list[dict] = []
    for length in cfg.caption_lengths:
        text, names = caption(f, ph, length)
        rows.append({"caption": text, "length": length, "objects": names})
    rows += questions(f, ph, shapes, cfg.questions, cfg.absent_share, cfg.question_types)
    for name, ref in choose(f, ph, shapes, cfg.detect, cfg.absent_share):
        rows.append({"object": name, "boxes": boxes(f, ref)})
    for name, ref in choose(f, ph, shapes, cfg.point, cfg.absent_share):
        rows.append({"object": name, "points": points(f, ref)})
    return [{**row, "scene": scene.index} for row in rows]
