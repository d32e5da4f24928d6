"""Question-answer pairs per type, from a scene's facts. Each maker returns (question, answer) or
None when the scene cannot support an unambiguous question of that kind.

Answers are short and canonical: digits, single lower-case colour or shape words, "Yes"/"No",
region names ("top left", "center" ...), the text verbatim, "Nothing", or "There is no X."
"""

from __future__ import annotations

from collections.abc import Callable

from .facts import Facts, Ref
from .palette import COLOURS
from .phrasing import Phraser, article

QA = tuple[str, str] | None


def _absent_shapes(f: Facts, shapes) -> list[str]:
    return [s for s in shapes if f.count(Ref(shape=s)) == 0]


def _absent_colours(f: Facts) -> list[str]:
    return [c for c in COLOURS if f.count(Ref(colour=c)) == 0]


def _classes(f: Facts, shapes) -> list[Ref]:
    """Every shape, colour and colour-shape class worth asking about (present or not)."""
    present_c = sorted({o.colour for o in f.objects})
    present_s = sorted({o.shape for o in f.objects})
    out = [Ref(shape=s) for s in shapes] + [Ref(colour=c) for c in COLOURS]
    return out + [Ref(colour=c, shape=s) for c in present_c for s in present_s]


def _class(ph: Phraser, f: Facts, shapes, present: bool) -> Ref | None:
    """A random class, first choosing among shape / colour / colour-shape classes evenly."""
    options = [r for r in _classes(f, shapes) if (f.count(r) > 0) == present]
    if not options:
        return None
    by_kind: dict[tuple[bool, bool], list[Ref]] = {}
    for r in options:
        by_kind.setdefault((r.colour is None, r.shape is None), []).append(r)
    return ph.pick(by_kind[ph.pick(sorted(by_kind))])


def _referable(f: Facts, ph: Phraser, **use) -> list[tuple[int, Ref]]:
    """(object, unique description) pairs; descriptions with a size word are kept less often
    when the object also has one without."""
    out = []
    for i in range(len(f.objects)):
        refs = f.unique_refs(i, **use)
        plain = [r for r in refs if r.size is None]
        out += [(i, r) for r in refs if r.size is None or not plain or ph.chance(0.3)]
    return out


def _balanced(ph: Phraser, options: list[tuple[str, object]]):
    """Pick an answer value uniformly among those on offer, then one option giving it, so that
    frequent answers (1, 0, "Nothing") do not crowd out the rest."""
    values = sorted({answer for answer, _ in options})
    value = ph.pick(values)
    return value, ph.pick([o for answer, o in options if answer == value])


def count(f: Facts, ph: Phraser, shapes, absent: bool) -> QA:
    if absent:
        ref = _class(ph, f, shapes, present=False)
    else:
        classes = [Ref()] + [r for r in _classes(f, shapes) if f.count(r) > 0]
        ref = _balanced(ph, [(str(f.count(r)), r) for r in classes])[1]
    if ref is None:
        return None
    p = ph.noun(ref.colour, ref.shape, plural=True, counting=True)
    return ph.question("count", p=p), str(f.count(ref))


def colour(f: Facts, ph: Phraser, shapes, absent: bool) -> QA:
    if absent:
        missing = _absent_shapes(f, shapes)
        if not missing:
            return None
        shape = ph.pick(missing)
        return ph.question("color", r=shape, c=ph.colour_word()), f"There is no {shape}."
    if f.text is not None and ph.chance(0.15):
        return ph.question("color", r=ph.pick(("text", "writing")), c=ph.colour_word()), f.text.colour
    options = _referable(f, ph, use_colour=False)
    if not options:
        return None
    i, ref = ph.pick(options)
    return ph.question("color", r=ph.noun(None, ref.shape, ref.size), c=ph.colour_word()), f.objects[i].colour


def shape(f: Facts, ph: Phraser, shapes, absent: bool) -> QA:
    if absent:
        if not _absent_colours(f):
            return None
        colour_name = ph.pick(_absent_colours(f))
        thing = ph.thing()
        return ph.question("shape", r=f"{ph.colour(colour_name)} {thing}"), f"There is no {colour_name} {thing}."
    options = _referable(f, ph, use_shape=False)
    if not options:
        return None
    i, ref = ph.pick(options)
    return ph.question("shape", r=ph.noun(ref.colour, None, ref.size)), f.objects[i].shape


def exists(f: Facts, ph: Phraser, shapes, absent: bool) -> QA:
    if ph.chance(0.12):
        return ph.question("exists_text"), "Yes" if f.text is not None else "No"
    ref = _class(ph, f, shapes, present=not absent)
    if ref is None:
        return None
    colour_word = ph.colour(ref.colour) if ref.colour else None
    head = ref.shape or ph.thing()
    one = " ".join(w for w in (colour_word, head) if w)
    many = " ".join(w for w in (colour_word, head + "s") if w)
    return ph.question("exists", s=article(one), p=many, p1=one), "No" if absent else "Yes"


def position(f: Facts, ph: Phraser, shapes, absent: bool) -> QA:
    options = _referable(f, ph)
    pairs = [(a, b) for a in options for b in options if a[0] != b[0]]
    if not pairs:
        return None
    (i, ra), (j, rb) = ph.pick(pairs)
    direction = ph.pick(f.directions)
    answer = f.side(i, j, direction)
    if answer is None:
        return None
    a, b = ph.noun(ra.colour, ra.shape, ra.size), ph.noun(rb.colour, rb.shape, rb.size)
    return ph.question("position", a=a, b=b, rel=ph.relation(direction)), "Yes" if answer else "No"


def relative_object(f: Facts, ph: Phraser, shapes, absent: bool) -> QA:
    options = _referable(f, ph)
    if not options:
        return None
    j, ref = ph.pick(options)
    found = []
    for direction in f.directions:
        sides = {i: f.side(i, j, direction) for i in range(len(f.objects)) if i != j}
        hits = [i for i, s in sides.items() if s]
        if None not in sides.values() and len(hits) <= 1:
            found.append((f.objects[hits[0]].name if hits else "Nothing", direction))
    named = [x for x in found if x[0] != "Nothing"]
    if not ph.chance(0.2 if named else 0.25):  # keep "Nothing" to about a fifth of answers
        found = named
    if not found:
        return None
    answer, direction = ph.pick(found)
    b = ph.noun(ref.colour, ref.shape, ref.size)
    return ph.question("relative_object", b=b, rel=ph.relation(direction), t=ph.thing()), answer


def where(f: Facts, ph: Phraser, shapes, absent: bool) -> QA:
    if absent:
        missing = _absent_shapes(f, shapes)
        if not missing:
            return None
        shape_name = ph.pick(missing)
        return ph.question("where", r=shape_name), f"There is no {shape_name}."
    if f.text is not None and ph.chance(0.15):
        region = f.text_region()
        return (ph.question("where", r=ph.pick(("text", "writing"))), region) if region else None
    options = _referable(f, ph)
    if not options:
        return None
    i, ref = ph.pick(options)
    region = f.object_region(i)
    return (ph.question("where", r=ph.noun(ref.colour, ref.shape, ref.size)), region) if region else None


def read(f: Facts, ph: Phraser, shapes, absent: bool) -> QA:
    if f.text is None:
        if not absent:
            return None
        return ph.question("read", k=ph.colour(ph.pick(tuple(COLOURS)))), "There is no text."
    return ph.question("read", k=ph.colour(f.text.colour)), f.text.text


def count_relative(f: Facts, ph: Phraser, shapes, absent: bool) -> QA:
    options = _referable(f, ph)
    if not options:
        return None
    j, ref_b = ph.pick(options)
    classes = [Ref()] + [r for r in _classes(f, shapes) if (f.count(r) > 0) != absent]
    found = []
    for direction in f.directions:
        for ref in classes:
            members = f.select(ref)
            if members == [j]:
                continue  # "how many red shapes are left of the red shape" says nothing
            sides = [f.side(i, j, direction) for i in members if i != j]
            if None not in sides:
                found.append((str(sum(sides)), (direction, ref)))
    if not found:
        return None
    answer, (direction, ref) = _balanced(ph, found)
    if answer == "0" and ph.chance(0.5):  # zero is the easiest answer to reach; keep it rarer
        return None
    p = ph.noun(ref.colour, ref.shape, plural=True, counting=True)
    b = ph.noun(ref_b.colour, ref_b.shape, ref_b.size)
    return ph.question("count_relative", p=p, b=b, rel=ph.relation(direction)), answer


Maker = Callable[[Facts, Phraser, tuple, bool], QA]
# Question type -> (maker, weight, share of absent-object variants relative to the config's).
MAKERS: dict[str, tuple[Maker, float, float]] = {
    "count": (count, 2.0, 1.0),
    "color": (colour, 1.5, 0.5),
    "shape": (shape, 1.5, 0.5),
    "exists": (exists, 1.5, 2.0),
    "position": (position, 1.0, 0.0),
    "relative_object": (relative_object, 0.7, 0.0),
    "where": (where, 1.0, 0.4),
    "read": (read, 1.0, 1.0),
    "count_relative": (count_relative, 0.8, 0.0),
}
QUESTION_TYPES = tuple(MAKERS)
