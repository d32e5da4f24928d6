"""SigLIP vision trunk (no pooling head) and the projection into the text width."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import VisionConfig
from .layers import MLP, merge_heads, split_heads


class VisionAttention(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.n_heads = config.enc_n_heads
        self.qkv = nn.Linear(config.enc_dim, 3 * config.enc_dim)
        self.proj = nn.Linear(config.enc_dim, config.enc_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        return self.proj(merge_heads(F.scaled_dot_product_attention(q, k, v)))


class VisionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.enc_dim, eps=config.layer_norm_eps)
        self.attn = VisionAttention(config)
        self.ln2 = nn.LayerNorm(config.enc_dim, eps=config.layer_norm_eps)
        self.mlp = MLP(config.enc_dim, config.enc_ff_dim, gelu=config.gelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class VisionEncoder(nn.Module):
    """Crops → per-patch features. Also owns the projection MLP into the text width."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.patch_emb = nn.Linear(config.patch_dim, config.enc_dim)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.n_patches, config.enc_dim))
        self.blocks = nn.ModuleList(VisionBlock(config) for _ in range(config.enc_n_layers))
        self.post_ln = nn.LayerNorm(config.enc_dim, eps=config.layer_norm_eps)
        self.proj_mlp = MLP(config.proj_in_dim, config.proj_inner_dim, config.proj_out_dim, gelu=config.gelu)

    def patchify(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) → (N, grid², C·p·p), patches row-major, each flattened channel-major."""
        n, channels, _, _ = pixels.shape
        p, g = self.config.enc_patch_size, self.config.grid_size
        x = pixels.reshape(n, channels, g, p, g, p)  # N, C, gy, py, gx, px
        x = x.permute(0, 2, 4, 1, 3, 5)  # N, gy, gx, C, py, px
        return x.reshape(n, g * g, channels * p * p)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) normalised crops → (N, grid², enc_dim) after post_ln."""
        x = self.patch_emb(self.patchify(pixels)) + self.pos_emb
        for block in self.blocks:
            x = block(x)
        return self.post_ln(x)
