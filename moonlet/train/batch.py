"""Packing images and their sequences into one training batch.

Every image contributes one row: ``[prefix (BOS + image) | seq 1 | seq 2 | …]``. Each sequence
starts at the position right after the prefix, attends to the whole prefix and causally to
itself, and never to the other sequences (a block mask from segment ids). So the vision tower
and the prefix run once per image however many annotations it has.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .dense import DenseTargets
from .sequences import IGNORE, Sequence


@dataclass
class PackedBatch:
    pixels: list[torch.Tensor]  # per image: (n_crops, C, S, S) normalised crops
    tilings: list[tuple[int, int]]
    kind: torch.Tensor  # (B, L) slot kinds after the prefix
    ids: torch.Tensor  # (B, L)
    values: torch.Tensor  # (B, L, 2)
    positions: torch.Tensor  # (B, L) absolute positions (prefix excluded)
    segments: torch.Tensor  # (B, L) 1.. per sequence, 0 for padding
    lm: torch.Tensor  # (B, L)
    coord: torch.Tensor  # (B, L)
    size: torch.Tensor  # (B, L, 2)
    sequence_index: torch.Tensor  # (B, L) index of the slot's sequence in the batch, -1 for padding
    n_sequences: int
    tasks: list[str]  # per sequence, in sequence_index order
    dense: DenseTargets | None = None  # per-patch targets of the auxiliary head, when training with one

    def to(self, device) -> PackedBatch:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        moved["pixels"] = [p.to(device) for p in self.pixels]
        moved["dense"] = self.dense.to(device) if self.dense is not None else None
        return PackedBatch(**moved)


def pack(images: list[tuple[torch.Tensor, tuple[int, int], list[Sequence]]], prefix_len: int) -> PackedBatch:
    """images: (pixels, tiling, sequences) per image."""
    lengths = [sum(len(s) for s in seqs) for _, _, seqs in images]
    width = max(lengths)
    batch = len(images)
    kind = torch.zeros(batch, width, dtype=torch.long)
    ids = torch.zeros(batch, width, dtype=torch.long)
    values = torch.zeros(batch, width, 2)
    positions = torch.full((batch, width), prefix_len, dtype=torch.long)
    segments = torch.zeros(batch, width, dtype=torch.long)
    lm = torch.full((batch, width), IGNORE, dtype=torch.long)
    coord = torch.full((batch, width), IGNORE, dtype=torch.long)
    size = torch.full((batch, width, 2), IGNORE, dtype=torch.long)
    sequence_index = torch.full((batch, width), -1, dtype=torch.long)
    n_sequences = 0
    tasks = []
    for row, (_, _, seqs) in enumerate(images):
        start = 0
        for number, seq in enumerate(seqs, start=1):
            end = start + len(seq)
            kind[row, start:end] = torch.tensor(seq.kind)
            ids[row, start:end] = torch.tensor(seq.ids)
            values[row, start:end] = torch.tensor(seq.values, dtype=torch.float32)
            positions[row, start:end] = prefix_len + torch.arange(len(seq))
            segments[row, start:end] = number
            lm[row, start:end] = torch.tensor(seq.lm)
            coord[row, start:end] = torch.tensor(seq.coord)
            size[row, start:end] = torch.tensor(seq.size)
            sequence_index[row, start:end] = n_sequences
            tasks.append(seq.task)
            n_sequences += 1
            start = end
    return PackedBatch(
        pixels=[p for p, _, _ in images],
        tilings=[t for _, t, _ in images],
        kind=kind,
        ids=ids,
        values=values,
        positions=positions,
        segments=segments,
        lm=lm,
        coord=coord,
        size=size,
        sequence_index=sequence_index,
        n_sequences=n_sequences,
        tasks=tasks,
    )


def packed_mask(segments: torch.Tensor, positions: torch.Tensor, prefix_len: int, bidirectional: bool) -> torch.Tensor:
    """Boolean mask (B, 1, P + L, P + L) over [prefix | packed sequences]."""
    batch, width = segments.shape
    device = segments.device
    prefix_pos = torch.arange(prefix_len, device=device).expand(batch, prefix_len)
    pos = torch.cat((prefix_pos, positions), dim=1)  # B, P+L
    seg = torch.cat((torch.zeros(batch, prefix_len, dtype=torch.long, device=device), segments), dim=1)
    is_prefix = torch.cat(
        (torch.ones(batch, prefix_len, dtype=torch.bool, device=device), torch.zeros_like(segments, dtype=torch.bool)),
        dim=1,
    )
    q_pos, k_pos = pos[:, :, None], pos[:, None, :]
    q_seg, k_seg = seg[:, :, None], seg[:, None, :]
    q_pre, k_pre = is_prefix[:, :, None], is_prefix[:, None, :]
    same_sequence = (q_seg == k_seg) & ~q_pre & ~k_pre & (k_pos <= q_pos)
    prefix_keys = k_pre & ((k_pos <= q_pos) | (q_pre & bidirectional) | ~q_pre)
    # padding slots (segment 0) attend among themselves and the prefix; nothing real sees them
    return (same_sequence | prefix_keys)[:, None]
