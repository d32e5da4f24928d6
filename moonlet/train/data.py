"""Training data: dataset rows grouped by image, in a deterministic order per epoch and rank."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.reader import Row, iter_rows


@dataclass(frozen=True)
class ImageGroup:
    image: Path
    rows: tuple[Row, ...]


def load_groups(path: str | Path | Sequence[str | Path], max_rows_per_image: int | None = None) -> list[ImageGroup]:
    """Every image with its rows, in file order (datasets in the order given). Only row
    metadata is held, never pixels."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    grouped: OrderedDict[Path, list[Row]] = OrderedDict()
    for row in (row for one in paths for row in iter_rows(one)):
        grouped.setdefault(row.image, []).append(row)
    groups = [ImageGroup(image, tuple(rows[:max_rows_per_image])) for image, rows in grouped.items()]
    if not groups:
        raise ValueError(f"no rows found in {path}")
    return groups


class BatchOrder:
    """Which groups form global batch ``step``: a fresh permutation per epoch from (seed, epoch).

    A step is fully determined by its number, so a resumed run sees exactly the batches an
    uninterrupted run would. Rank r of w takes every w-th group of the global batch.
    """

    def __init__(self, n_groups: int, batch_size: int, seed: int):
        if batch_size > n_groups:
            raise ValueError(f"batch size {batch_size} exceeds the {n_groups} images of the dataset")
        self.n_groups = n_groups
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = n_groups // batch_size
        self._epoch = -1
        self._perm: np.ndarray | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_groups)
            self._epoch = epoch
        return self._perm

    def batch(self, step: int, rank: int = 0, world: int = 1) -> list[int]:
        epoch, index = divmod(step, self.steps_per_epoch)
        start = index * self.batch_size
        chosen = self._permutation(epoch)[start : start + self.batch_size]
        return [int(i) for i in chosen[rank::world]]
