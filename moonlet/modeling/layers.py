"""Building blocks shared by the vision tower, the text decoder and the region heads."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

GELU_APPROXIMATE = {"tanh": "tanh", "exact": "none"}


class MLP(nn.Module):
    """fc1 → GELU → fc2, both linear layers with bias."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int | None = None, gelu: str = "tanh"):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, in_dim if out_dim is None else out_dim)
        self.approximate = GELU_APPROXIMATE[gelu]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, H·D) → (B, H, T, D)."""
    batch, length, width = x.shape
    return x.view(batch, length, n_heads, width // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, D) → (B, T, H·D)."""
    batch, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * dim)
