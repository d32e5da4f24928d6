"""Training losses: next-token loss on answer tokens, bin losses for coordinates and sizes."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..model import MoondreamModel
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


def losses(model: MoondreamModel, batch: PackedBatch) -> dict[str, torch.Tensor]:
    """Per-image mean of every target's loss, averaged over images (so that splitting a batch
    across data-parallel ranks averages to the same value); also the parts for logging."""
    hidden = packed_hidden(model, batch)
    x = hidden
    per_image = torch.zeros(x.shape[0], device=x.device)
    counts = torch.zeros(x.shape[0], device=x.device)
    parts: dict[str, torch.Tensor] = {}

    def add(name: str, selected: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        loss = F.cross_entropy(logits.float(), targets, reduction="none")
        if loss.dim() > 1:  # sizes: (n, 2) → one loss per slot
            loss = loss.mean(-1)
        rows = selected.nonzero()[:, 0]
        per_image.index_add_(0, rows, loss)
        counts.index_add_(0, rows, torch.ones_like(loss))
        parts[name] = loss.detach().mean()

    lm_sel = batch.lm != IGNORE
    if lm_sel.any():
        add("lm", lm_sel, model.logits(hidden[lm_sel]), batch.lm[lm_sel])
    if model.region is not None:
        coord_sel = batch.coord != IGNORE
        if coord_sel.any():
            add("coord", coord_sel, model.region.coordinate_logits(hidden[coord_sel]), batch.coord[coord_sel])
        size_sel = batch.size[..., 0] != IGNORE
        if size_sel.any():
            logits = model.region.size_logits(hidden[size_sel])  # n, 2, bins
            add("size", size_sel, logits.transpose(1, 2), batch.size[size_sel])
    parts["loss"] = (per_image / counts.clamp(min=1)).mean()
    return parts
