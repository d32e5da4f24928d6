"""Wording: question templates per type, lead-ins, noun phrases, numbers and lists.

Templates are picked at random and combined with optional lead-ins and synonyms (colour/color,
shape/object/figure ...), so no single surface form dominates a question type. Every type has the
plainest forms too ("How many X are there?", "Is there a X in the image?", "What color/colour is
the X?"), and a share of questions is typed casually (lower-case start, no question mark).
"""

from __future__ import annotations

import numpy as np

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
THINGS = ("shape", "object", "figure", "item", "thing")
COUNT_THINGS = ("shape", "object", "figure")

RELATIONS = {
    "left": ("left of", "to the left of", "on the left side of", "further left than"),
    "right": ("right of", "to the right of", "on the right side of", "further right than"),
    "above": ("above", "higher than", "higher up than", "further up than"),
    "below": ("below", "lower than", "lower down than", "further down than"),
}

LEADS = (
    "In this image, ",
    "In the picture, ",
    "Looking at the image, ",
    "Based on the picture, ",
    "From what you can see, ",
    "In this scene, ",
    "Quick question: ",
    "Question: ",
    "Look closely. ",
    "Ignore the background. ",
    "Please answer briefly. ",
    "There are a few things here. ",
    "Take a look at the picture. ",
    "Hey, ",
    "Tell me this: ",
    "Be precise. ",
)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "count": (
        "How many {p} are there?",
        "How many {p} are in the image?",
        "How many {p} can you see?",
        "How many {p} do you see?",
        "Count the {p}.",
        "What is the number of {p}?",
        "What number of {p} appear in the picture?",
        "How many {p} does the image contain?",
        "Count how many {p} there are.",
        "Give the number of {p}.",
        "How many {p} are shown?",
        "How many {p} are visible?",
        "Can you count the {p}?",
        "Tell me how many {p} there are.",
        "How many {p} are in this picture?",
        "What's the count of {p}?",
        "How many {p} are there in the image?",
        "How many {p} are in the picture?",
        "How many {p} can be seen?",
        "What is the total number of {p}?",
        "How many {p} do you count?",
        "Count all the {p}.",
        "How many {p} does the picture have?",
        "Number of {p}?",
        "How many {p} are drawn?",
    ),
    "color": (
        "What {c} is the {r}?",
        "What is the {c} of the {r}?",
        "Which {c} is the {r}?",
        "What {c} does the {r} have?",
        "The {r} is what {c}?",
        "Tell me the {c} of the {r}.",
        "Name the {c} of the {r}.",
        "In what {c} is the {r} drawn?",
        "Can you say what {c} the {r} is?",
        "Identify the {c} of the {r}.",
        "What's the {c} of the {r}?",
        "Which {c} has the {r} got?",
        "What {c} is used for the {r}?",
        "How would you describe the {c} of the {r}?",
        "What {c} is the {r} in the image?",
        "What {c} is the {r} in the picture?",
        "What {c} is this {r}?",
        "Which {c} is the {r} drawn in?",
        "What is the {r}'s {c}?",
        "Say the {c} of the {r}.",
        "What {c} does the {r} appear to be?",
    ),
    "shape": (
        "What shape is the {r}?",
        "What is the shape of the {r}?",
        "Which shape is the {r}?",
        "What kind of shape is the {r}?",
        "The {r} is what shape?",
        "Name the shape of the {r}.",
        "Tell me what shape the {r} is.",
        "What shape does the {r} have?",
        "Identify the shape of the {r}.",
        "What form does the {r} take?",
        "What is the {r}?",
        "Which kind of figure is the {r}?",
        "What geometric shape is the {r}?",
        "Can you name the shape of the {r}?",
        "What shape is the {r} in the image?",
        "What type of shape is the {r}?",
        "What shape has the {r} got?",
        "Which shape does the {r} have?",
        "What is the shape of the {r} in the picture?",
    ),
    "exists": (
        "Is there {s}?",
        "Is there {s} in the image?",
        "Can you see {s}?",
        "Does the image contain {s}?",
        "Do you see {s}?",
        "Is {s} present?",
        "Does the picture show {s}?",
        "Are there any {p}?",
        "Is {s} visible?",
        "Can {s} be found in the picture?",
        "Is there at least one {p1}?",
        "Does this picture include {s}?",
        "Are any {p} shown?",
        "Is there {s} anywhere in the picture?",
        "Is there {s} in the picture?",
        "Is there {s} here?",
        "Do you see {s} in the image?",
        "Does the image have {s}?",
        "Can you find {s}?",
        "Is there {s} in this image?",
        "Does the image show {s}?",
        "Can you spot {s}?",
        "Is there {s} drawn here?",
    ),
    "exists_text": (
        "Is there any text?",
        "Is there any writing in the image?",
        "Does the image contain text?",
        "Can you see any words or numbers?",
        "Is anything written in the picture?",
        "Is there text here?",
        "Does the picture have any writing on it?",
        "Are there any letters or digits?",
        "Is some text visible?",
        "Has anything been written in the image?",
        "Is there any text in the image?",
        "Does the picture contain any text?",
        "Is there writing here?",
    ),
    "position": (
        "Is the {a} {rel} the {b}?",
        "Is the {a} located {rel} the {b}?",
        "Does the {a} appear {rel} the {b}?",
        "Is the {a} positioned {rel} the {b}?",
        "Would you say the {a} is {rel} the {b}?",
        "Is it true that the {a} is {rel} the {b}?",
        "Does the {a} sit {rel} the {b}?",
        "Can the {a} be seen {rel} the {b}?",
        "Is the {a} placed {rel} the {b}?",
        "Is the {a} drawn {rel} the {b}?",
        "True or false: the {a} is {rel} the {b}?",
        "Does the {a} lie {rel} the {b}?",
        "Is the {a} {rel} the {b} in the image?",
        "Is the {a} found {rel} the {b}?",
        "Is the {a} shown {rel} the {b}?",
    ),
    "relative_object": (
        "What is {rel} the {b}?",
        "Which {t} is {rel} the {b}?",
        "What can be seen {rel} the {b}?",
        "Which {t} lies {rel} the {b}?",
        "What do you see {rel} the {b}?",
        "Name the {t} {rel} the {b}.",
        "What is located {rel} the {b}?",
        "Which {t} can be found {rel} the {b}?",
        "What {t} is {rel} the {b}?",
        "Tell me what is {rel} the {b}.",
        "What sits {rel} the {b}?",
        "What is there {rel} the {b}?",
        "Which {t} is placed {rel} the {b}?",
        "What appears {rel} the {b}?",
    ),
    "where": (
        "Where is the {r}?",
        "Where is the {r} located?",
        "In which part of the image is the {r}?",
        "Where can the {r} be found?",
        "Which region of the picture contains the {r}?",
        "Where in the image is the {r}?",
        "Whereabouts is the {r}?",
        "In what part of the picture is the {r}?",
        "Where does the {r} appear?",
        "Tell me where the {r} is.",
        "Where has the {r} been placed?",
        "Which part of the image holds the {r}?",
        "Where is the {r} in the image?",
        "Where is the {r} in the picture?",
        "Where can I find the {r}?",
        "Which area of the image is the {r} in?",
    ),
    "read": (
        "What does the text say?",
        "What is written in the image?",
        "Read the text in the image.",
        "What text appears in the picture?",
        "What is the text?",
        "What does it say?",
        "Can you read the text?",
        "Read out the writing.",
        "What is printed in the image?",
        "Transcribe the text.",
        "What does the writing say?",
        "What words or numbers are written here?",
        "What does the {k} text say?",
        "What is written in {k}?",
        "Read the {k} writing.",
        "What does the text in the image say?",
        "What is written here?",
        "What word or number is shown?",
        "Read what is written.",
        "What text is in the image?",
    ),
    "count_relative": (
        "How many {p} are {rel} the {b}?",
        "Count the {p} {rel} the {b}.",
        "How many {p} can you see {rel} the {b}?",
        "What is the number of {p} {rel} the {b}?",
        "How many {p} lie {rel} the {b}?",
        "How many {p} are located {rel} the {b}?",
        "Tell me how many {p} are {rel} the {b}.",
        "How many {p} are there {rel} the {b}?",
        "How many {p} appear {rel} the {b}?",
        "Count how many {p} are {rel} the {b}.",
        "How many {p} can be seen {rel} the {b}?",
        "How many {p} sit {rel} the {b}?",
    ),
}


class Phraser:
    """Random wording choices, all drawn from one generator."""

    def __init__(self, rng: np.random.Generator, lead_share: float = 0.55, casual_share: float = 0.0):
        self.rng = rng
        self.lead_share = lead_share
        self.casual_share = casual_share

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def colour(self, name: str) -> str:
        return "grey" if name == "gray" and self.chance(0.3) else name

    def thing(self, plural: bool = False, counting: bool = False) -> str:
        word = self.pick(COUNT_THINGS if counting else THINGS)
        return word + "s" if plural else word

    def colour_word(self) -> str:
        return "colour" if self.chance(0.5) else "color"

    def relation(self, direction: str) -> str:
        return self.pick(RELATIONS[direction])

    def noun(
        self,
        colour: str | None = None,
        shape: str | None = None,
        size: str | None = None,
        plural: bool = False,
        counting: bool = False,
    ) -> str:
        """``size colour shape`` (or a generic noun when shape is None), e.g. 'large red stars'."""
        head = (shape + "s" if plural else shape) if shape else self.thing(plural, counting)
        words = [w for w in (size, self.colour(colour) if colour else None, head) if w]
        return " ".join(words)

    def question(self, kind: str, **fields: str) -> str:
        text = self.pick(TEMPLATES[kind]).format(**fields)
        if self.chance(self.lead_share):
            lead = self.pick(LEADS)
            text = lead + (text[0].lower() + text[1:] if lead.endswith(", ") else text)
        if self.casual_share and self.chance(self.casual_share):
            text = casual(text)
        return text


def casual(text: str) -> str:
    """``text`` as typed in a hurry: a lower-case first letter and no final punctuation."""
    return (text[:1].lower() + text[1:]).rstrip("?.")


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def number(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def join(items: list[str], oxford: bool = False) -> str:
    """'a', 'a and b', 'a, b and c' (with an optional serial comma)."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + ("," if oxford and len(items) > 2 else "") + " and " + items[-1]


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]
