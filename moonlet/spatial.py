"""Spatial references in queries (2025-06-21): points and boxes given to the model as encodings.

A point ``(x, y)`` takes two coordinate slots in the prompt; a box ``(x_min, y_min, x_max, y_max)``
takes two coordinate slots (its centre) and one size slot (its width and height). The slots'
embeddings are replaced by the region model's encodings when the prompt is prefilled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .config import TokenizerConfig
from .modeling.region import RegionModel

Ref = tuple[float, ...]


class SpatialRefError(ValueError):
    """A spatial reference that is not a normalised point or box."""


def parse_spatial_refs(refs: object, field: str = "spatial_refs") -> list[Ref]:
    """The refs as tuples of 2 (point) or 4 (box) floats in [0, 1], boxes with min ≤ max."""
    if refs is None:
        return []
    if isinstance(refs, (str, bytes)) or not isinstance(refs, Sequence):
        raise SpatialRefError(f"{field} must be a list of points [x, y] or boxes [x_min, y_min, x_max, y_max]")
    return [parse_ref(ref, f"{field}[{index}]") for index, ref in enumerate(refs)]


def parse_ref(ref: object, name: str, sizes: tuple[int, ...] = (2, 4)) -> Ref:
    """One point (or box) as floats in [0, 1]; ``name`` is how errors call it."""
    if isinstance(ref, (str, bytes)) or not isinstance(ref, Sequence) or len(ref) not in sizes:
        kinds = "a point [x, y]" + (" or a box [x_min, y_min, x_max, y_max]" if 4 in sizes else "")
        raise SpatialRefError(f"{name} must be {kinds}, got {ref!r}")
    values = []
    for position, value in enumerate(ref):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise SpatialRefError(f"{name}[{position}] must be a number from 0 to 1 (normalised), got {value!r}")
        values.append(float(value))
    if len(values) == 4 and (values[0] > values[2] or values[1] > values[3]):
        raise SpatialRefError(
            f"{name} is a box whose minimum exceeds its maximum (x_min ≤ x_max, y_min ≤ y_max): {ref!r}"
        )
    return tuple(values)


def ref_slot_ids(refs: Sequence[Ref], tokens: TokenizerConfig) -> list[int]:
    """The prompt ids standing for the refs: coord, coord per point; coord, coord, size per box."""
    ids: list[int] = []
    for ref in refs:
        ids += [tokens.coord_id, tokens.coord_id] + ([tokens.size_id] if len(ref) == 4 else [])
    return ids


@torch.inference_mode()
def ref_embeddings(refs: Sequence[Ref], region: RegionModel, start: int, device) -> dict[int, torch.Tensor]:
    """Prompt index → embedding for the refs' slots, which begin at ``start`` in the prompt."""
    slots: dict[int, torch.Tensor] = {}
    index = start
    for ref in refs:
        if len(ref) == 2:
            x, y = ref
        else:
            x, y = (ref[0] + ref[2]) / 2, (ref[1] + ref[3]) / 2
        for value in (x, y):
            slots[index] = region.encode_coordinate(torch.tensor([value], device=device))[0]
            index += 1
        if len(ref) == 4:
            size = torch.tensor([[ref[2] - ref[0], ref[3] - ref[1]]], device=device)
            slots[index] = region.encode_size(size)[0]
            index += 1
    return slots
