"""Low-rank updates (LoRA variants) applied on the fly to the text decoder's linear layers.

A variant leaves the base weights untouched: each adapted layer adds ``(u Aᵀ) Bᵀ · scale`` to its
output, where ``u`` is the layer's input (or, for the attention output in the official variant
files, the attention block's input). Rows of one batch may use different variants, or none:
``batch_adapter`` stacks their updates so that each row gets its own. Nothing here is trained;
``moonlet.train.lora`` trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch


@dataclass(frozen=True)
class LowRank:
    """One layer's update: a (rank, in), b (out, rank)."""

    a: torch.Tensor
    b: torch.Tensor
    scale: float = 1.0

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        update = (inputs.to(self.a.dtype) @ self.a.t()) @ self.b.t()
        update = update if self.scale == 1.0 else update * self.scale
        return update.to(inputs.dtype)

    def to(self, device: torch.device, dtype: torch.dtype) -> LowRank:
        return LowRank(self.a.to(device, dtype), self.b.to(device, dtype), self.scale)


@dataclass(frozen=True)
class RowLowRank:
    """Each batch row's own update of one layer: a (B, rank, in), b (B, out, rank), scale (B, 1, 1).

    Rows without an update hold zeros (their output is unchanged); ranks are zero-padded to the largest.
    """

    a: torch.Tensor
    b: torch.Tensor
    scale: torch.Tensor

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:  # inputs (B, T, in) → (B, T, out)
        update = torch.bmm(torch.bmm(inputs.to(self.a.dtype), self.a.transpose(1, 2)), self.b.transpose(1, 2))
        return (update * self.scale).to(inputs.dtype)

    @classmethod
    def stack(cls, updates: Sequence[LowRank | None]) -> RowLowRank | None:
        """One update per row (None: none for that row); None when no row has one."""
        present = [u for u in updates if u is not None]
        if not present:
            return None
        first = present[0]
        rank = max(u.a.shape[0] for u in present)
        (fan_out, _), fan_in = first.b.shape, first.a.shape[1]
        a = first.a.new_zeros(len(updates), rank, fan_in)
        b = first.b.new_zeros(len(updates), fan_out, rank)
        scale = first.a.new_ones(len(updates), 1, 1)
        for row, update in enumerate(updates):
            if update is not None:
                a[row, : update.a.shape[0]] = update.a
                b[row, :, : update.b.shape[1]] = update.b
                scale[row] = update.scale
        return cls(a, b, scale)


@dataclass(frozen=True)
class LayerAdapter:
    """The updates of one text block (``LowRank``, or ``RowLowRank`` in a mixed batch); a missing
    target is left as it is."""

    qkv: LowRank | RowLowRank | None = None
    proj: LowRank | RowLowRank | None = None
    proj_from_input: LowRank | RowLowRank | None = None
    fc1: LowRank | RowLowRank | None = None
    fc2: LowRank | RowLowRank | None = None


# The attention output projection's update reads the attention output (moonlet's own adapters,
# ``moonlet train --mode lora``: ``proj``) or the block's normalised input (official files: ``proj_from_input``).
TARGETS = tuple(f.name for f in fields(LayerAdapter))


@dataclass(frozen=True)
class TextAdapter:
    """A named variant: one ``LayerAdapter`` (or None) per text block."""

    name: str
    layers: tuple[LayerAdapter | None, ...]

    def to(self, device: torch.device, dtype: torch.dtype) -> TextAdapter:
        def move(update: LowRank | None) -> LowRank | None:
            return None if update is None else update.to(device, dtype)

        layers = tuple(
            None if layer is None else LayerAdapter(**{t: move(getattr(layer, t)) for t in TARGETS})
            for layer in self.layers
        )
        return TextAdapter(self.name, layers)


def batch_adapter(adapters: Sequence[TextAdapter | None]) -> TextAdapter | None:
    """The updates for a batch whose row i uses ``adapters[i]`` (None: the base model).

    One variant for every row is that variant itself; a mix gives per-row stacked updates.
    """
    names = {adapter.name if adapter else None for adapter in adapters}
    if len(names) == 1:
        return adapters[0]
    depth = max(len(adapter.layers) for adapter in adapters if adapter is not None)
    layers = []
    for index in range(depth):
        per_row = [adapter.layers[index] if adapter is not None else None for adapter in adapters]
        if all(layer is None for layer in per_row):
            layers.append(None)
            continue
        stacked = {t: RowLowRank.stack([getattr(layer, t) if layer else None for layer in per_row]) for t in TARGETS}
        layers.append(LayerAdapter(**stacked))
    return TextAdapter("+".join(sorted(str(name) for name in names)), tuple(layers))


def add_update(output: torch.Tensor, update: LowRank | RowLowRank | None, inputs: torch.Tensor) -> torch.Tensor:
    """``output`` plus the update of ``inputs`` (``output`` unchanged without one)."""
    return output if update is None else output + update(inputs)
