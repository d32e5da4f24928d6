"""Answer normalisation: the VQA rules (punctuation, articles, number words, contractions) and
parsers for numbers, counts and yes/no answers."""

from __future__ import annotations

import itertools
import math
import re

# Punctuation the VQA rules delete (or turn into a space); "'" and "." are handled apart.
PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
ARTICLES = frozenset({"a", "an", "the"})
NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
# Beyond ten, only used when reading counts (the VQA rules stop at ten).
COUNT_WORDS = {
    **NUMBER_WORDS,
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
    "twenty": "20",
}

_CANONICAL_CONTRACTIONS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't
haven't he'd he'd've he'll he's how'd how'll how's i'd i'd've i'll i'm i've isn't it'd it'd've
it'll let's ma'am mightn't mightn't've might've mustn't must've needn't not've o'clock oughtn't
shan't she'd she'd've she'll she's should've shouldn't shouldn't've somebody'd somebody'd've
somebody'll somebody's someone'd someone'd've someone'll someone's something'd something'd've
something'll something's that's there'd there'd've there're there's they'd they'd've they'll
they're they've 'twas wasn't we'd've we've weren't what'll what're what's what've when's where'd
where's where've who'd who'd've who'll who's who've why'll why're why's won't would've wouldn't
wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've
""".split()
# Apostrophe-free spellings that are ordinary words: never rewritten.
_REAL_WORDS = frozenset({"its", "ill", "id", "well", "were", "wed", "hell", "shell", "shed", "lets", "whore", "twas"})


def _contraction_map() -> dict[str, str]:
    """Every spelling of a contraction with some of its apostrophes dropped -> the proper form."""
    mapping: dict[str, str] = {}
    for word in _CANONICAL_CONTRACTIONS:
        marks = [i for i, ch in enumerate(word) if ch == "'"]
        for r in range(1, len(marks) + 1):
            for dropped in itertools.combinations(marks, r):
                variant = "".join(ch for i, ch in enumerate(word) if i not in dropped)
                if variant not in _REAL_WORDS:
                    mapping[variant] = word
    return mapping


CONTRACTIONS = _contraction_map()
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")


def strip_punctuation(text: str) -> str:
    """The VQA punctuation rule: a mark next to a space (or any mark when the text holds a
    digit-comma-digit number) is deleted, otherwise replaced by a space; periods not followed
    by a digit are deleted."""
    glued = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        if mark not in out:
            continue
        delete = glued or (mark + " ") in text or (" " + mark) in text
        out = out.replace(mark, "" if delete else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def normalize_words(text: str) -> str:
    """Lower-case; number words to digits; articles dropped; contractions restored."""
    words = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word in ARTICLES:
            continue
        words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_answer(text) -> str:
    """The VQA answer normalisation, used by VQA accuracy and the exact-match benchmarks."""
    text = str(text).replace("\n", " ").replace("\t", " ").strip()
    return normalize_words(strip_punctuation(text))


def parse_number(text) -> float | None:
    """A number written as ``1,234``, ``$5``, ``12%`` or ``-3.5``; None when it is not one."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text) if math.isfinite(text) else None
    cleaned = str(text).strip().lower().rstrip(".").replace(" ", "")
    cleaned = re.sub(r"(?<=\d),(?=\d{3}(\D|$))", "", cleaned)
    cleaned = cleaned.removeprefix("$").removesuffix("%")
    if not re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?", cleaned):
        return None
    value = float(cleaned)
    return value if math.isfinite(value) else None


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_count(text) -> float | None:
    """The first number in an answer, digits or a number word ("There are three." -> 3)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    cleaned = re.sub(r"(?<=\d),(?=\d)", "", str(text))
    for word in strip_punctuation(cleaned).lower().split():
        word = COUNT_WORDS.get(word, word)
        match = _NUMBER.fullmatch(word)
        if match:
            return float(match.group())
    return None


def yes_no(text) -> str:
    """Read a yes/no answer: its first word when that is yes or no, otherwise "no" when a
    negation ("no", "not") appears anywhere, else "yes" (the POPE convention). An empty
    answer is "no"."""
    words = strip_punctuation(str(text)).lower().replace("n't", " not").split()
    if not words:
        return "no"
    if words[0] in ("yes", "no"):
        return words[0]
    return "no" if any(w in ("no", "not") for w in words) else "yes"
