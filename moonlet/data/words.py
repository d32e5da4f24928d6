"""Short strings to render: words, numbers and codes (never a colour or shape name)."""

from __future__ import annotations

import numpy as np

WORDS = (
    "cat",
    "dog",
    "sun",
    "moon",
    "sale",
    "stop",
    "open",
    "exit",
    "hello",
    "book",
    "tree",
    "fish",
    "bird",
    "lamp",
    "cake",
    "milk",
    "rain",
    "snow",
    "wind",
    "fire",
    "game",
    "play",
    "jump",
    "shop",
    "home",
    "city",
    "park",
    "road",
    "boat",
    "king",
    "rose",
    "lion",
    "bear",
    "frog",
    "duck",
    "wolf",
    "owl",
    "bee",
    "map",
    "key",
    "cup",
    "hat",
    "bus",
    "car",
    "pen",
    "fox",
    "sky",
    "sea",
    "tea",
    "cafe",
    "hotel",
    "music",
    "zoo",
    "gift",
    "ball",
    "door",
    "farm",
    "gold",
    "ice",
    "jam",
    "kite",
    "leaf",
    "nest",
    "pie",
    "ring",
    "sock",
    "toy",
    "web",
    "hi",
    "up",
    "way",
    "taxi",
)
ROOMS = ("room", "gate", "door", "bus", "track", "row")
LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


def _case(rng: np.random.Generator, word: str) -> str:
    r = rng.random()
    return word.upper() if r < 0.5 else word.title() if r < 0.8 else word


def random_text(rng: np.random.Generator) -> str:
    """A word, a number, a word with a number, or a short code."""
    kind = rng.random()
    if kind < 0.45:
        return _case(rng, str(rng.choice(WORDS)))
    if kind < 0.7:
        return str(int(rng.integers(0, 1000 if rng.random() < 0.7 else 10000)))
    if kind < 0.85:
        return _case(rng, f"{rng.choice(ROOMS)} {int(rng.integers(1, 100))}")
    return f"{LETTERS[int(rng.integers(len(LETTERS)))]}{int(rng.integers(1, 100))}"
