"""Captions in three lengths: short names the shapes, normal adds colours, sizes, background and
text, long adds where each object is, overlaps, and the text's colour and place."""

from __future__ import annotations

from .facts import Facts
from .phrasing import Phraser, article, capital, join, number

BACKGROUND_WORDS = {
    "flat": ("plain", "flat", "solid"),
    "gradient": ("gradient", "shaded", "smoothly shaded"),
    "noise": ("noisy", "grainy", "speckled"),
    "stripes": ("striped", "stripy"),
}
PLACES = {
    "center": ("in the center", "in the middle"),
    "top": ("at the top", "near the top"),
    "bottom": ("at the bottom", "near the bottom"),
    "left": ("on the left", "on the left side"),
    "right": ("on the right", "on the right side"),
}
SHORT = (
    "{List}.",
    "{N} {things}: {list}.",
    "An image of {list}.",
    "A picture with {list}.",
    "Simple shapes: {list}.",
    "{List} on a {bg} background.",
    "A drawing of {list}.",
    "{List}, drawn on a {bg} background.",
    "Shapes: {list}.",
    "A simple scene with {list}.",
    "There {be} {list}.",
    "Here we have {list}.",
    "Shown: {list}.",
    "A {bg} background with {list}.",
    "An illustration of {list}.",
    "Just {list}.",
)
INTRO = (
    "The image shows {list}.",
    "This picture contains {list}.",
    "There {be} {list} in the image.",
    "We can see {list}.",
    "The picture has {list}.",
    "{N} {things} in total: {list}.",
    "This is an image of {list}.",
    "The scene contains {list}.",
    "The drawing shows {list}.",
    "It is a picture of {list}.",
    "You can see {list}.",
    "Shown here {be} {list}.",
    "Drawn here {be} {list}.",
    "The image is made up of {list}.",
    "Visible in the picture {be} {list}.",
)
BACKGROUND = (
    "The background is a {bg} one.",
    "Everything sits on a {bg} background.",
    "Behind them is a {bg} background.",
    "It has a {bg} background.",
    "It is drawn on a {bg} background.",
    "The {things} are on a {bg} background.",
)
TEXT = (
    'The text "{t}" is written on it.',
    'There is also text that reads "{t}".',
    'Some writing says "{t}".',
    'It is labelled "{t}".',
    'The image also shows the text "{t}".',
)
TEXT_LONG = (
    'The text "{t}" is written in {k} {place}.',
    '{Place}, "{t}" is written in {k}.',
    'The {k} text "{t}" appears {place}.',
    'There is {k} writing {place} that reads "{t}".',
)
OBJECT_LONG = ("{A} is {place}.", "{Place}, there is {a}.", "{A} can be seen {place}.", "{A} sits {place}.")
OVERLAP = ("{A} partly covers {b}.", "{A} overlaps {b}.", "{A} is drawn over part of {b}.")


def _place(ph: Phraser, region: str) -> str:
    if region in PLACES:
        return ph.pick(PLACES[region])
    return "in the " + region + (" corner" if ph.chance(0.5) else "")


def _background(ph: Phraser, f: Facts) -> str:
    bg = f.scene.background
    if bg.colour is not None:  # pure white or black
        return ph.pick((bg.colour, f"plain {bg.colour}", f"pure {bg.colour}", f"solid {bg.colour}"))
    tone = ph.pick(("light", "pale")) if not bg.dark else "dark"
    return f"{tone} {ph.pick(BACKGROUND_WORDS[bg.kind])}"


def _groups(f: Facts, order: list[int], key) -> list[tuple[tuple, list[int]]]:
    groups: dict[tuple, list[int]] = {}
    for i in order:
        groups.setdefault(key(f.objects[i]), []).append(i)
    return list(groups.items())


def _group_phrase(ph: Phraser, f: Facts, members: list[int], with_colour: bool) -> str:
    objs = [f.objects[i] for i in members]
    o, n = objs[0], len(objs)
    size = o.size if with_colour and len({x.size for x in objs}) == 1 and ph.chance(0.6) else None
    words = " ".join(
        w for w in (size, ph.colour(o.colour) if with_colour else None, o.shape + ("s" if n > 1 else "")) if w
    )
    return article(words) if n == 1 else f"{number(n)} {words}"


def caption(f: Facts, ph: Phraser, length: str) -> tuple[str, list[str]]:
    """A caption of the given length and the object names in the order they are mentioned."""
    n = len(f.objects)
    if ph.chance(0.5):
        order = sorted(range(n), key=lambda i: (f.objects[i].centre[0], f.objects[i].centre[1]))
    else:
        order = [int(i) for i in ph.rng.permutation(n)]
    with_colour = length != "short"
    key = (lambda o: (o.colour, o.shape)) if with_colour else (lambda o: (o.shape,))
    groups = _groups(f, order, key)
    parts = [_group_phrase(ph, f, members, with_colour) for _, members in groups]
    listed = join(parts, oxford=ph.chance(0.3))
    fields = {
        "list": listed,
        "List": capital(listed),
        "N": capital(number(n)),
        "bg": _background(ph, f),
        "things": ph.thing(plural=n > 1, counting=True),
        "be": "is" if len(groups[0][1]) == 1 else "are",
    }
    mentioned = [f.objects[i].name for _, members in groups for i in members]
    if length == "short":
        return ph.pick(SHORT).format(**fields), mentioned
    sentences = [ph.pick(INTRO).format(**fields)]
    extra = [ph.pick(BACKGROUND).format(**fields)]
    t = f.text
    if length == "normal":
        if t is not None:
            extra.append(ph.pick(TEXT).format(t=t.text))
    else:
        for i in order:
            o = f.objects[i]
            phrase = f"{o.size} {ph.colour(o.colour)} {o.shape}" + (" outline" if o.stroke else "")
            place = _place(ph, f.object_region(i, strict=False))
            sentences.append(
                ph.pick(OBJECT_LONG).format(
                    A=capital(article(phrase)), a=article(phrase), place=place, Place=capital(place)
                )
            )
        for i in order:
            for j in f.objects[i].occluded_by:
                top = f.objects[j]
                sentences.append(ph.pick(OVERLAP).format(A=capital(article(top.name)), b=article(f.objects[i].name)))
        if t is not None:
            place = _place(ph, f.text_region(strict=False))
            extra.append(ph.pick(TEXT_LONG).format(t=t.text, k=ph.colour(t.colour), place=place, Place=capital(place)))
    if ph.chance(0.5):
        extra.reverse()
    return " ".join(sentences + extra), mentioned
