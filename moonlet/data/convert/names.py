"""Category names as they read in a sentence: singular with an article, plural for counting, and
finding which names of a vocabulary a text mentions."""

from __future__ import annotations

import re

# name -> (singular phrase, plural phrase) where the regular rules do not fit (COCO's few cases).
SPECIAL = {
    "person": ("person", "people"),
    "skis": ("pair of skis", "pairs of skis"),
    "scissors": ("pair of scissors", "pairs of scissors"),
    "broccoli": ("broccoli", "broccoli"),
    "sheep": ("sheep", "sheep"),
    "mouse": ("mouse", "mice"),
    "knife": ("knife", "knives"),
    "tv": ("TV", "TVs"),
}


def singular(name: str) -> str:
    return SPECIAL.get(name, (name, ""))[0]


def plural(name: str) -> str:
    """English plural of a category name, inflecting its last word ('wine glass' -> 'wine glasses')."""
    if name in SPECIAL:
        return SPECIAL[name][1]
    head, _, last = name.rpartition(" ")
    if last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def mentions(text: str, names) -> set[str]:
    """The names (singular or plural, whole words, any case) that ``text`` mentions. Longer names
    are matched first and their words masked, so 'hot dog' does not also count as 'dog'."""
    forms = sorted(
        ((form.lower(), name) for name in set(names) for form in {name, singular(name), plural(name)}),
        key=lambda item: -len(item[0]),
    )
    text = " " + re.sub(r"[^a-z0-9]+", " ", text.lower()) + " "
    found = set()
    for form, name in forms:
        needle = " " + " ".join(re.findall(r"[a-z0-9]+", form)) + " "
        if needle.strip() and needle in text:
            found.add(name)
            text = text.replace(needle, " # ")
    return found
