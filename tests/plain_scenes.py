"""Plain pictures drawn by code that is not moonlet's generator: flat shapes on a flat background,
as a user might draw them, with the questions a user would ask and their answers.

Independent on purpose: nothing here imports ``moonlet.data``, so a model that only learnt the
generator's quirks does not pass by accident.
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

COLOURS = {
    "red": (230, 25, 25),
    "green": (20, 150, 40),
    "blue": (25, 60, 230),
    "yellow": (245, 220, 20),
    "orange": (250, 140, 0),
    "purple": (135, 40, 190),
    "black": (10, 10, 10),
}
SHAPES = ("circle", "square", "triangle", "hexagon", "star")
BACKGROUNDS = ((255, 255, 255), (235, 235, 235), (250, 245, 230))


def polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "hexagon":
        return [(cx + r * math.cos(k * math.pi / 3), cy + r * math.sin(k * math.pi / 3)) for k in range(6)]
    if shape == "star":
        return [
            (
                cx + (r if k % 2 == 0 else r * 0.45) * math.cos(-math.pi / 2 + k * math.pi / 5),
                cy + (r if k % 2 == 0 else r * 0.45) * math.sin(-math.pi / 2 + k * math.pi / 5),
            )
            for k in range(10)
        ]
    raise ValueError(shape)


def plain_scene(seed: int, size: int = 256) -> tuple[Image.Image, list[dict]]:
    """1-3 non-overlapping shapes, distinct in shape, on a flat light background."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), rng.choice(BACKGROUNDS))
    draw = ImageDraw.Draw(image)
    objects: list[dict] = []
    for shape in rng.sample(SHAPES, rng.randint(1, 3)):
        colour = rng.choice(sorted(COLOURS))
        for _ in range(100):
            r = rng.uniform(0.08, 0.16) * size
            cx, cy = rng.uniform(r + 4, size - r - 4), rng.uniform(r + 4, size - r - 4)
            if all(math.hypot(cx - o["cx"], cy - o["cy"]) > r + o["r"] + 8 for o in objects):
                break
        else:
            continue
        if shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=COLOURS[colour])
        else:
            draw.polygon(polygon(shape, cx, cy, r), fill=COLOURS[colour])
        objects.append({"shape": shape, "colour": colour, "cx": cx, "cy": cy, "r": r})
    return image, objects


def questions(objects: list[dict], seed: int) -> list[tuple[str, str]]:
    """Counting, colour and existence questions with their answers (present and absent shapes)."""
    rng = random.Random(seed + 1)
    present = [o["shape"] for o in objects]
    absent = [s for s in SHAPES if s not in present]
    asked = rng.choice(objects)
    other = rng.choice(absent)
    article = "an" if other[0] in "aeiou" else "a"
    return [
        ("How many shapes are there?", str(len(objects))),
        (f"How many {asked['shape']}s are there?", "1"),
        (f"What color is the {asked['shape']}?", asked["colour"]),
        (f"Is there a {asked['shape']} in the image?", "Yes"),
        (f"Is there {article} {other} in the image?", "No"),
    ]
