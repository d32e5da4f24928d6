"""Partial rotary position embedding (split-half pairing, applied to the first dims of a head)."""

from __future__ import annotations

import torch


def rotary_tables(rotary_dim: int, max_positions: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (max_positions, rotary_dim // 2), float32."""
    exponents = torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim
    inv_freq = 1.0 / (theta**exponents)
    angles = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate dims j and j + r/2 of the first r dims of each head; the rest pass through.

    x: (B, H, T, D); cos, sin: (B, T, r/2) gathered at each token's absolute position.
    """
    half = cos.shape[-1]
    rot = x[..., : 2 * half].float()
    x1, x2 = rot[..., :half], rot[..., half:]
    cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
    rotated = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).to(x.dtype)
    return torch.cat((rotated, x[..., 2 * half :]), dim=-1)
