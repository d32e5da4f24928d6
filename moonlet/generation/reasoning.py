"""Grounded reasoning (2025-06-21): the reasoning phase of a query, and its text with grounding.

The engine runs the phase (``Reasoning`` on a ``TextRequest``): after the prompt's thinking id
the model writes reasoning tokens until the answer id; a coordinate token is decoded from the
hidden state that produced it and fed back as an encoded coordinate, as detect and point do.
``grounded_text`` turns the recorded tokens and coordinates into the release's output form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Reasoning:
    """How a request's reasoning phase runs; after it, the answer id is fed and the answer follows."""

    answer_id: int  # ends the reasoning (the model's choice, or fed when max_tokens is reached)
    coord_id: int  # fed back as the coordinate decoded at its step
    masked_ids: tuple[int, ...]  # logits set to -inf at every reasoning step after the first
    chunk_ids: tuple[int, ...]  # each of these opens a new text chunk (start-ground, end-ground)


@dataclass(frozen=True)
class ReasoningStep:
    """One row's reasoning event in an engine ``Step``.

    ``token``: the reasoning token (None on the step the model chose the answer id);
    ``coordinate``: the value decoded for a coordinate token; ``finished``: the phase ends here.
    """

    token: int | None
    coordinate: float | None = None
    finished: bool = False


def grounded_text(
    tokens: Sequence[int], coordinates: Sequence[float | None], spec: Reasoning, decode: Callable[[list[int]], str]
) -> dict:
    """``{"text", "grounding": [{"start_idx", "end_idx", "points": [[x, y], ...]}]}``.

    Each chunk's ids are decoded on their own and the texts joined; a chunk with two or more
    coordinates is one grounding entry, its points pairing consecutive coordinates (an odd last
    one is dropped) and its offsets the chunk's characters in the joined text.
    """
    chunks: list[tuple[list[int], list[float]]] = [([], [])]
    for token, coordinate in zip(tokens, coordinates):
        if token in spec.chunk_ids:
            chunks.append(([], []))
        chunks[-1][0].append(token)
        if coordinate is not None:
            chunks[-1][1].append(coordinate)
    text = ""
    grounding = []
    for ids, values in chunks:
        start = len(text)
        text += decode(ids)
        if len(values) >= 2:
            points = [[values[i], values[i + 1]] for i in range(0, len(values) - 1, 2)]
            grounding.append({"start_idx": start, "end_idx": len(text), "points": points})
    return {"text": text, "grounding": grounding}


def split_reasoning(
    steps: Iterator, spec: Reasoning, decode: Callable[[list[int]], str]
) -> tuple[dict, Iterator[int | None]]:
    """Run a one-row engine stream through its reasoning phase: the grounded reasoning, and the rest of
    the stream as the answer's tokens (None where a step has none)."""
    finished = False
    tokens: list[int] = []
    coordinates: list[float | None] = []
    for step in steps:
        thought = step.reasoning[0] if step.reasoning else None
        if thought is None:  # the answer began without a reasoning phase
            raise ValueError("the request has no reasoning phase")
        if thought.token is not None:
            tokens.append(thought.token)
            coordinates.append(thought.coordinate)
        if thought.finished:
            finished = True
            break
    if not finished:
        raise ValueError("the stream ended before its reasoning did")
    return grounded_text(tokens, coordinates, spec, decode), (step.tokens[0] for step in steps)
