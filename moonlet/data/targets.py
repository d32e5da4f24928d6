"""Detect and point targets: an object name and every matching box or point (empty when absent).

Names are singular: a shape ("star"), a colour and shape ("red star"), a colour and a generic noun
("red shape"), or "text". Boxes and points are listed by centre, left to right (then top to bottom).
"""

from __future__ import annotations

from .facts import Facts, Ref
from .palette import COLOURS
from .phrasing import Phraser


def _candidates(f: Facts, shapes, absent: bool) -> list[tuple[str, Ref | None]]:
    present_s = sorted({o.shape for o in f.objects})
    present_c = sorted({o.colour for o in f.objects})
    if absent:
        out = [(s, Ref(shape=s)) for s in shapes if s not in present_s]
        out += [
            (f"{c} {s}", Ref(colour=c, shape=s))
            for c in present_c
            for s in present_s
            if not f.count(Ref(colour=c, shape=s))
        ]
        out += [(f"{c} {s}", Ref(colour=c, shape=s)) for c in COLOURS if c not in present_c for s in present_s]
        return out + ([("text", None)] if f.text is None else [])
    out = [(s, Ref(shape=s)) for s in present_s] + [(o.name, Ref(colour=o.colour, shape=o.shape)) for o in f.objects]
    out += [(f"{c} shape", Ref(colour=c)) for c in present_c]
    return out + ([("text", None)] if f.text is not None else [])


def choose(f: Facts, ph: Phraser, shapes, count: int, absent_share: float) -> list[tuple[str, Ref | None]]:
    """Up to ``count`` distinct (name, reference) targets; a None reference means the text."""
    chosen: dict[str, Ref | None] = {}
    for _ in range(count * 4):
        if len(chosen) >= count:
            break
        options = [c for c in _candidates(f, shapes, ph.chance(absent_share)) if c[0] not in chosen]
        if options:
            name, ref = ph.pick(options)
            chosen[name] = ref
    return list(chosen.items())


def _found(f: Facts, ref: Ref | None) -> list[tuple[tuple[float, float], tuple[int, int, int, int], list[float]]]:
    """(centre, pixel box, normalised point) of each match, left to right, then top to bottom."""
    w, h = f.scene.width, f.scene.height
    if ref is None:
        items = []
        for t in f.scene.texts:
            cx, cy = (t.box[0] + t.box[2]) / 2, (t.box[1] + t.box[3]) / 2
            items.append(((cx, cy), t.box, [round(cx / w, 4), round(cy / h, 4)]))
    else:
        items = [(f.objects[i].centre, f.objects[i].box, f.scene.norm_point(f.objects[i])) for i in f.select(ref)]
    return sorted(items, key=lambda item: item[0])


def boxes(f: Facts, ref: Ref | None) -> list[list[float]]:
    return [f.scene.norm_box(box) for _, box, _ in _found(f, ref)]


def points(f: Facts, ref: Ref | None) -> list[list[float]]:
    return [point for _, _, point in _found(f, ref)]
