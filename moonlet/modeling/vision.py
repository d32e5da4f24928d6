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


def sincos_table(grid: int, dim: int) -> torch.Tensor:
    """(grid², dim) fixed 2-D sin-cos positions, row-major: half the channels encode y, half x,
    each as sines and cosines of geometrically spaced frequencies; entries in [-1, 1]."""
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos table needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    frequencies = 1.0 / (10000.0 ** (torch.arange(quarter, dtype=torch.float32) / quarter))  # quarter
    coords = torch.arange(grid, dtype=torch.float32)
    angles = coords[:, None] * frequencies[None]  # grid, quarter
    axis = torch.cat((angles.sin(), angles.cos()), dim=-1)  # grid, dim/2
    y = axis[:, None, :].expand(grid, grid, dim // 2)
    x = axis[None, :, :].expand(grid, grid, dim // 2)
    return torch.cat((y, x), dim=-1).reshape(grid * grid, dim)


class ConvStem(nn.Module):
    """Stages of 3x3 convolutions, GELU between them: (N, C, S, S) → (N, C', S/2^k, S/2^k). Each
    stage is a stride-2 convolution to its width, then ``stem_depth - 1`` residual stride-1 ones
    (x + conv(gelu(x))) that look again at the same resolution."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        widths = (config.stem_in_channels, *config.stem_channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, kernel_size=3, stride=2, padding=1) for a, b in zip(widths[:-1], widths[1:])
        )
        self.refine = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(b, b, kernel_size=3, padding=1) for _ in range(config.stem_depth - 1))
            for b in widths[1:]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, (conv, refine) in enumerate(zip(self.convs, self.refine)):
            x = conv(x)
            for residual in refine:
                x = x + residual(F.gelu(x, approximate="tanh"))
            if index < len(self.convs) - 1:
                x = F.gelu(x, approximate="tanh")
        return x


def coordinate_channels(pixels: torch.Tensor) -> torch.Tensor:
    """(N, C, S, S) → (N, C + 2, S, S): each pixel's x and y in [-1, 1] appended (CoordConv)."""
    n, _, height, width = pixels.shape
    ys = torch.linspace(-1.0, 1.0, height, device=pixels.device, dtype=pixels.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=pixels.device, dtype=pixels.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack((grid_x, grid_y))[None].expand(n, 2, height, width)
    return torch.cat((pixels, coords), dim=1)


class VisionEncoder(nn.Module):
    """Crops → per-patch features. Also owns the projection MLP into the text width."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.stem = ConvStem(config) if config.stem == "conv" else None
        self.patch_emb = nn.Linear(config.patch_dim, config.enc_dim)
        self.patch_norm = nn.LayerNorm(config.enc_dim, eps=config.layer_norm_eps) if config.patch_norm else None
        self.pos_emb = nn.Parameter(torch.zeros(1, config.n_patches, config.enc_dim))
        self.register_buffer("pos_fixed", None, persistent=False)
        self.init_buffers()
        self.blocks = nn.ModuleList(VisionBlock(config) for _ in range(config.enc_n_layers))
        self.post_ln = nn.LayerNorm(config.enc_dim, eps=config.layer_norm_eps)
        self.proj_mlp = MLP(config.proj_in_dim, config.proj_inner_dim, config.proj_out_dim, gelu=config.gelu)

    def init_buffers(self, device: torch.device | str | None = None) -> None:
        """(Re)compute the tables derived from the config (never stored in checkpoints)."""
        if self.config.position_table == "sincos":
            table = sincos_table(self.config.grid_size, self.config.enc_dim)[None].to(device)
            self.register_buffer("pos_fixed", table, persistent=False)

    def patchify(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, C, S', S') → (N, grid², C·p'·p'), patches row-major, each flattened channel-major
        (p' = S' / grid: the patch size, or what is left of it after the conv stem)."""
        n, channels, side, _ = pixels.shape
        g = self.config.grid_size
        p = side // g
        x = pixels.reshape(n, channels, g, p, g, p)  # N, C, gy, py, gx, px
        x = x.permute(0, 2, 4, 1, 3, 5)  # N, gy, gx, C, py, px
        return x.reshape(n, g * g, channels * p * p)

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) normalised crops → (N, grid², enc_dim) before the blocks, positions added."""
        if self.config.coord_channels:
            pixels = coordinate_channels(pixels)
        if self.stem is not None:
            pixels = self.stem(pixels)
        x = self.patch_emb(self.patchify(pixels))
        if self.patch_norm is not None:
            x = self.patch_norm(x)
        x = x + self.pos_emb
        return x if self.pos_fixed is None else x + self.pos_fixed.to(x.dtype)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) normalised crops → (N, grid², enc_dim) after post_ln."""
        x = self.patch_features(pixels)
        for block in self.blocks:
            x = block(x)
        return self.post_ln(x)
