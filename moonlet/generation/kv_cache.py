"""Static key/value cache: preallocated once, written in place at each row's positions."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import TextConfig


@dataclass
class KVCache:
    """keys and values: (layers, slots, kv_heads, context, head_dim) each."""

    keys: torch.Tensor
    values: torch.Tensor

    @classmethod
    def allocate(
        cls, config: TextConfig, slots: int, device: torch.device | str, dtype: torch.dtype, context: int | None = None
    ) -> KVCache:
        shape = (config.n_layers, slots, config.n_kv_heads, context or config.max_context, config.head_dim)
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    @property
    def slots(self) -> int:
        return self.keys.shape[1]

    @property
    def context(self) -> int:
        return self.keys.shape[3]

    def layer(self, index: int, rows: slice) -> LayerCache:
        return LayerCache(self.keys[index, rows], self.values[index, rows])

    def copy_rows(self, source: KVCache, src_rows: slice, dst_rows: slice, length: int) -> None:
        """Copy the first ``length`` positions of ``source`` rows into this cache's rows."""
        self.keys[:, dst_rows, :, :length] = source.keys[:, src_rows, :, :length]
        self.values[:, dst_rows, :, :length] = source.values[:, src_rows, :, :length]

    def nbytes(self) -> int:
        return self.keys.numel() * self.keys.element_size() * 2


@dataclass
class LayerCache:
    """One layer's view of a block of cache rows: (rows, kv_heads, context, head_dim)."""

    keys: torch.Tensor
    values: torch.Tensor

    def write(self, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v (B, H, T, D) at positions (B, T) of each row."""
        rows = torch.arange(positions.shape[0], device=positions.device)[:, None]
        self.keys[rows, :, positions] = k.transpose(1, 2).to(self.keys.dtype)
        self.values[rows, :, positions] = v.transpose(1, 2).to(self.values.dtype)

    def read(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.keys[:, :, :length], self.values[:, :, :length]
