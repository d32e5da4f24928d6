"""Turning one dataset row into the training sequence that follows the image prefix.

A sequence is a list of slots. A slot feeds either a token id, a coordinate (through the
region coordinate encoder) or a size (through the size encoder), exactly as inference feeds
them, and carries the targets that the hidden state at that slot must predict:

- ``lm``: the next token id (answer tokens and the end id; -100 elsewhere, so prompts cost no loss)
- ``coord``: the bin of the next coordinate (detect/point)
- ``size``: the (width, height) bins of the next size (detect)

Region sequences follow the trained form ``prompt, (x, y[, size])·N, end``: the hidden state at
the last prompt slot predicts "continue" (a non-end id) and the first x; after the last object
it predicts the end id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import MoondreamConfig
from ..data.questions import QUESTION_TYPES
from ..prompts import PromptBuilder

IGNORE = -100
TOKEN, COORD, SIZE = 0, 1, 2


@dataclass
class Sequence:
    task: str  # what the row trains (moonlet.train.objective.TASKS): query_<type>, point, detect, caption_<length>
    kind: list[int]  # TOKEN / COORD / SIZE per slot
    ids: list[int]  # token id for TOKEN slots (0 otherwise)
    values: list[tuple[float, float]]  # coordinate (v, 0) or size (w, h) for the other slots
    lm: list[int]
    coord: list[int]
    size: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.kind)

    def append(self, kind: int, token: int = 0, value=(0.0, 0.0)) -> None:
        self.kind.append(kind)
        self.ids.append(token)
        self.values.append(tuple(value))
        self.lm.append(IGNORE)
        self.coord.append(IGNORE)
        self.size.append((IGNORE, IGNORE))


def empty(task: str) -> Sequence:
    return Sequence(task, [], [], [], [], [], [])


def coordinate_bin(value: float, n_bins: int) -> int:
    """Inverse of inference's ``bin / n_bins``."""
    return min(max(round(value * n_bins), 0), n_bins - 1)


def size_bin(value: float, n_bins: int, kind: str) -> int:
    """Inverse of the size decoder's value: log-scale 2^(10·b/(n−1) − 10), or linear b/n."""
    if kind == "log":
        value = max(value, 2.0**-10)
        return min(max(round((math.log2(value) + 10) / 10 * (n_bins - 1)), 0), n_bins - 1)
    return coordinate_bin(value, n_bins)


class SequenceBuilder:
    def __init__(self, config: MoondreamConfig, prompts: PromptBuilder):
        self.config = config
        self.prompts = prompts
        self.eos = config.tokenizer.eos_id
        self.continue_id = config.tokenizer.coord_id

    def text(self, prompt: list[int], answer: str, task: str) -> Sequence:
        """prompt tokens, then answer tokens; loss on every answer token and the end id."""
        answer_ids = self.prompts.tokenizer.encode(answer)
        seq = empty(task)
        for token in prompt + answer_ids:
            seq.append(TOKEN, token)
        targets = answer_ids + [self.eos]
        start = len(prompt) - 1  # the last prompt slot predicts the first answer token
        for offset, target in enumerate(targets):
            seq.lm[start + offset] = target
        return seq

    def region(self, prompt: list[int], items: list[tuple[float, ...]], with_size: bool) -> Sequence:
        region = self.config.region
        seq = empty("detect" if with_size else "point")
        for token in prompt:
            seq.append(TOKEN, token)
        last = len(seq) - 1
        for item in items:
            # a box feeds its centre; a point is its own centre
            x, y = ((item[0] + item[2]) / 2, (item[1] + item[3]) / 2) if with_size else item
            seq.lm[last] = self.continue_id
            seq.coord[last] = coordinate_bin(x, region.n_coord_bins)
            seq.append(COORD, value=(x, 0.0))
            seq.coord[-1] = coordinate_bin(y, region.n_coord_bins)
            seq.append(COORD, value=(y, 0.0))
            if with_size:
                w, h = item[2] - item[0], item[3] - item[1]
                n, kind = region.n_size_bins, region.size_bins
                seq.size[-1] = (size_bin(w, n, kind), size_bin(h, n, kind))
                seq.append(SIZE, value=(w, h))
            last = len(seq) - 1
        seq.lm[last] = self.eos
        return seq

    def from_row(self, row) -> Sequence:
        """A ``moonlet.data.reader.Row`` → its sequence."""
        if row.kind == "caption":
            length = row.length or "normal"
            return self.text(self.prompts.caption(length), row.caption, f"caption_{length}")
        if row.kind == "query":
            task = f"query_{row.type}" if row.type in QUESTION_TYPES else "query"
            return self.text(self.prompts.query(row.question), row.answer, task)
        if row.kind == "detect":
            return self.region(self.prompts.detect(row.object), list(row.boxes), with_size=True)
        if row.kind == "point":
            return self.region(self.prompts.point(row.object), list(row.points), with_size=False)
        raise ValueError(f"unknown row kind {row.kind!r}")
