"""Low-rank updates (LoRA variants) applied on the fly to the text decoder's linear layers.

A variant leaves the base weights untouched: each adapted layer adds ``(u Aᵀ) Bᵀ · scale`` to its
output, where ``u`` is the layer's input (or, for the attention output in the official variant
files, the attention block's input). Nothing here is trained; ``moonlet.train.lora`` trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TARGETS = ("qkv", "proj", "fc1", "fc2")


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


@dataclass(frozen=True)
class LayerAdapter:
    """The updates of one text block; a missing target is left as it is."""

    qkv: LowRank | None = None
    proj: LowRank | None = None
    fc1: LowRank | None = None
    fc2: LowRank | None = None
    # The official variants feed the attention block's input (after its LayerNorm) to the output
    # projection's update; moonlet's own adapters (``moonlet train --mode lora``) feed the layer's input.
    proj_reads_block_input: bool = True


@dataclass(frozen=True)
class TextAdapter:
    """A named variant: one ``LayerAdapter`` (or None) per text block."""

    name: str
    layers: tuple[LayerAdapter | None, ...]

    def to(self, device: torch.device, dtype: torch.dtype) -> TextAdapter:
        def move(update: LowRank | None) -> LowRank | None:
            if update is None:
                return None
            return LowRank(update.a.to(device, dtype), update.b.to(device, dtype), update.scale)

        layers = tuple(
            None
            if layer is None
            else LayerAdapter(*(move(getattr(layer, t)) for t in TARGETS), layer.proj_reads_block_input)
            for layer in self.layers
        )
        return TextAdapter(self.name, layers)


def add_update(output: torch.Tensor, update: LowRank | None, inputs: torch.Tensor) -> torch.Tensor:
    """``output`` plus the update of ``inputs`` (``output`` unchanged without one)."""
    return output if update is None else output + update(inputs)
