"""Training losses: next-token loss on answer tokens, bin losses for coordinates and sizes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..data.questions import QUESTION_TYPES
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


def packed_hidden(model: MoondreamModel, batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states (B, L, dim) of the packed slots, with the vision tower in the graph, each
    image's first-crop vision tokens (B, grid², enc_dim) and its image tokens as the decoder gets
    them (B, grid², dim)."""
    features = [model.vision(pixels) for pixels in batch.pixels]  # per image: n_crops, grid², enc_dim
    prefix = torch.stack(
        [
            model.prefix_embeddings(model.project_features(feats, tiling))[0]
            for feats, tiling in zip(features, batch.tilings)
        ]
    )  # B, P, dim
    prefix_len = prefix.shape[1]
    x = torch.cat((prefix, slot_embeddings(model, batch)), dim=1)
    positions = torch.cat(
        (torch.arange(prefix_len, device=x.device).expand(x.shape[0], prefix_len), batch.positions), dim=1
    )
    mask = packed_mask(batch.segments, batch.positions, prefix_len, model.config.text.prefix_bidirectional)
    image_tokens = prefix[:, prefix_len - model.config.vision.n_patches :]
    return model.text(x, positions, mask)[:, prefix_len:], torch.stack([f[0] for f in features]), image_tokens


# A row's task is its family, or ``family_kind`` where the row says more: a caption's length, a
# question's type (``query_read``). A weight given for the family covers every kind not named.
TASKS = (
    "query",
    *(f"query_{kind}" for kind in QUESTION_TYPES),
    "point",
    "detect",
    "caption",
    "caption_short",
    "caption_normal",
    "caption_long",
)


def task_family(task: str) -> str:
    """``caption_long`` → ``caption``; ``query_read`` → ``query``; ``point`` → ``point``."""
    return task.partition("_")[0]


@dataclass(frozen=True)
class LossWeights:
    """``region``: weight of coordinate and size targets against token targets within a row.
    ``bin_sigma``: width (in bins) of the Gaussian soft labels for coordinate and size bins;
    0 gives plain one-hot targets (the reference recipe). Neighbouring bins are nearly right,
    so soft labels make the 1024-way bins learnable from scratch much sooner.
    ``tasks``: weight of each row by what it trains (see ``TASKS``; a family such as ``caption`` or
    ``query`` sets every kind of it not named on its own); unnamed tasks weigh 1. A row's loss is
    the mean over its own targets, so a long caption counts as one row, not as its many tokens."""

    region: float = 1.0
    bin_sigma: float = 0.0
    tasks: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        known = set(TASKS)
        for name, weight in self.tasks:
            if name not in known:
                raise ValueError(f"unknown task {name!r} in task weights; known: {', '.join(sorted(known))}")
            if weight < 0:
                raise ValueError(f"task weight {name}={weight} must be >= 0")

    def task(self, name: str) -> float:
        weights = dict(self.tasks)
        return weights.get(name, weights.get(task_family(name), 1.0))


def parse_task_weights(text: str) -> tuple[tuple[str, float], ...]:
    """``"query_read=3,caption=0.2,caption_long=0.05"`` → (("query_read", 3.0), ...); validated by
    LossWeights."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"task weight {item!r} must be NAME=WEIGHT")
        pairs.append((name.strip(), float(value)))
    LossWeights(tasks=tuple(pairs))
    return tuple(pairs)


def soft_bin_targets(targets: torch.Tensor, n_bins: int, sigma: float) -> torch.Tensor:
    """(...,) bin ids → (..., n_bins) Gaussian distributions centred on them."""
    bins = torch.arange(n_bins, device=targets.device, dtype=torch.float32)
    weights = torch.exp(-0.5 * ((bins - targets[..., None].float()) / sigma) ** 2)
    return weights / weights.sum(-1, keepdim=True)


def losses(
    model: MoondreamModel, batch: PackedBatch, weights: LossWeights = LossWeights(), dense_head=None
) -> dict[str, torch.Tensor]:
    """Each row's mean over its targets (token, coordinate and size targets, the latter weighted by
    ``weights.region``), then the mean over rows weighted by their task; also the parts for logging.
    With a ``dense_head`` and the batch's dense targets, ``dense`` is the mean per-patch auxiliary
    loss of the batch's images (``moonlet.train.dense``)."""
    hidden, vision_tokens, image_tokens = packed_hidden(model, batch)
    n = batch.n_sequences
    row_sum = torch.zeros(n, device=hidden.device)
    row_count = torch.zeros(n, device=hidden.device)
    parts: dict[str, torch.Tensor] = {}

    def add(
        name: str, selected: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, weight: float, soft: bool
    ) -> None:
        """logits (n, ..., bins) with targets (n, ...)."""
        logits = logits.float()
        if soft and weights.bin_sigma > 0:
            loss = -(soft_bin_targets(targets, logits.shape[-1], weights.bin_sigma) * logits.log_softmax(-1)).sum(-1)
        else:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
            loss = loss.view(targets.shape)
        if loss.dim() > 1:  # sizes: (n, 2) → one loss per slot
            loss = loss.mean(-1)
        rows = batch.sequence_index[selected]
        row_sum.index_add_(0, rows, loss * weight)
        row_count.index_add_(0, rows, torch.full_like(loss, weight))
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
    row_loss = row_sum / row_count.clamp(min=1e-9)
    task_weight = torch.tensor([weights.task(task) for task in batch.tasks], device=hidden.device)
    for task in sorted(set(batch.tasks)):
        chosen = torch.tensor([t == task for t in batch.tasks], device=hidden.device) & (row_count > 0)
        if chosen.any():
            parts[f"task_{task}"] = row_loss[chosen].detach().mean()
    if dense_head is not None and batch.dense is not None:
        parts.update(dense_head.loss(vision_tokens, batch.dense, image_tokens))
    parts["loss_sum"] = (row_loss * task_weight).sum()
    parts["loss"] = parts["loss_sum"] / max(batch_weight(batch, weights), 1e-9)
    return parts


def batch_weight(batch: PackedBatch, weights: LossWeights) -> float:
    """The sum of the batch's row weights: the denominator of its loss. It depends on the data
    only, so data-parallel ranks can agree on the global one before any forward pass."""
    return sum(weights.task(task) for task in batch.tasks)
