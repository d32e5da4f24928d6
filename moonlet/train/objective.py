"""Training losses: next-token loss on answer tokens, bin losses for coordinates and sizes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..modeling.model import MoondreamModel
from .batch import PackedBatch, packed_mask
from .sequences import COORD, IGNORE, SIZE


def slot_embeddings(model: MoondreamModel, batch: PackedBatch) -> torch.Tensor:
    """(B, L, dim): token embeddings, or region encodings for coordinate and size slots."""
    x = model.embed_tokens(batch.ids)
    if model.region is not None and (batch.kind != 0).any():
        coords = model.region.encode_coordinate(batch.values[..., 0]).to(x.dtype)
        sizes = model.region.encode_size(batch.values).to(x.dtype)
        kind = batch.kind[..., None]
        x = torch.where(kind == COORD, coords, torch.where(kind == SIZE, sizes, x))
    return x


def packed_hidden(model: MoondreamModel, batch: PackedBatch) -> torch.Tensor:
    """Hidden states (B, L, dim) of the packed slots, with the vision tower in the graph."""
    prefix = torch.stack(
        [
            model.prefix_embeddings(model.embed_pixels(pixels, tiling))[0]
            for pixels, tiling in zip(batch.pixels, batch.tilings)
        ]
    )  # B, P, dim
    prefix_len = prefix.shape[1]
    x = torch.cat((prefix, slot_embeddings(model, batch)), dim=1)
    positions = torch.cat(
        (torch.arange(prefix_len, device=x.device).expand(x.shape[0], prefix_len), batch.positions), dim=1
    )
    mask = packed_mask(batch.segments, batch.positions, prefix_len, model.config.text.prefix_bidirectional)
    return model.text(x, positions, mask)[:, prefix_len:]


@dataclass(frozen=True)
class LossWeights:
    """``region``: weight of coordinate and size targets against token targets.
    ``bin_sigma``: width (in bins) of the Gaussian soft labels for coordinate and size bins;
    0 gives plain one-hot targets (the reference recipe). Neighbouring bins are nearly right,
    so soft labels make the 1024-way bins learnable from scratch much sooner."""

    region: float = 1.0
    bin_sigma: float = 0.0


def soft_bin_targets(targets: torch.Tensor, n_bins: int, sigma: float) -> torch.Tensor:
    """(...,) bin ids → (..., n_bins) Gaussian distributions centred on them."""
    bins = torch.arange(n_bins, device=targets.device, dtype=torch.float32)
    weights = torch.exp(-0.5 * ((bins - targets[..., None].float()) / sigma) ** 2)
    return weights / weights.sum(-1, keepdim=True)


def losses(model: MoondreamModel, batch: PackedBatch, weights: LossWeights = LossWeights()) -> dict[str, torch.Tensor]:
    """Per-image weighted mean of every target's loss, averaged over images (so that splitting a
    batch across data-parallel ranks averages to the same value); also the parts for logging."""
    hidden = packed_hidden(model, batch)
    per_image = torch.zeros(hidden.shape[0], device=hidden.device)
    counts = torch.zeros(hidden.shape[0], device=hidden.device)
    parts: dict[str, torch.Tensor] = {}

    def add(name: str, selected: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, weight: float, soft: bool) -> None:
        """logits (n, ..., bins) with targets (n, ...)."""
        logits = logits.float()
        if soft and weights.bin_sigma > 0:
            loss = -(soft_bin_targets(targets, logits.shape[-1], weights.bin_sigma) * logits.log_softmax(-1)).sum(-1)
        else:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
            loss = loss.view(targets.shape)
        if loss.dim() > 1:  # sizes: (n, 2) → one loss per slot
            loss = loss.mean(-1)
        rows = selected.nonzero()[:, 0]
        per_image.index_add_(0, rows, loss * weight)
        counts.index_add_(0, rows, torch.full_like(loss, weight))
        parts[name] = loss.detach().mean()

    lm_sel = batch.lm != IGNORE
    if lm_sel.any():
        add("lm", lm_sel, model.logits(hidden[lm_sel]), batch.lm[lm_sel], 1.0, soft=False)
    if model.region is not None:
        coord_sel = batch.coord != IGNORE
        if coord_sel.any():
            logits = model.region.coordinate_logits(hidden[coord_sel])
            add("coord", coord_sel, logits, batch.coord[coord_sel], weights.region, soft=True)
        size_sel = batch.size[..., 0] != IGNORE
        if size_sel.any():
            logits = model.region.size_logits(hidden[size_sel])  # n, 2, bins
            add("size", size_sel, logits, batch.size[size_sel], weights.region, soft=True)
    parts["loss"] = (per_image / counts.clamp(min=1e-9)).mean()
    return parts
