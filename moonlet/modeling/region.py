"""Region model: Fourier encoders that turn coordinates and sizes into token embeddings,
and MLP decoders that turn hidden states into coordinate and size bins."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import RegionConfig
from .layers import MLP


def fourier_features(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """x (..., k) with freqs (k, f) → (..., 2f) = [cos(2πxW) ‖ sin(2πxW)]."""
    angles = 2 * math.pi * (x @ freqs)
    return torch.cat((angles.cos(), angles.sin()), dim=-1)


class RegionModel(nn.Module):
    def __init__(self, config: RegionConfig):
        super().__init__()
        self.config = config
        self.coord_features = nn.Parameter(torch.zeros(1, config.coord_feat_dim // 2))
        self.coord_encoder = nn.Linear(config.coord_feat_dim, config.dim)
        self.coord_decoder = MLP(config.dim, config.inner_dim, config.coord_out_dim)
        self.size_features = nn.Parameter(torch.zeros(2, config.size_feat_dim // 2))
        self.size_encoder = nn.Linear(config.size_feat_dim, config.dim)
        self.size_decoder = MLP(config.dim, config.inner_dim, config.size_out_dim)

    def encode_coordinate(self, coord: torch.Tensor) -> torch.Tensor:
        """(...,) values in [0, 1] → (..., dim)."""
        coord = coord.to(self.coord_features.dtype)
        return self.coord_encoder(fourier_features(coord[..., None], self.coord_features))

    def encode_size(self, size: torch.Tensor) -> torch.Tensor:
        """(..., 2) (width, height) → (..., dim)."""
        size = size.to(self.size_features.dtype)
        return self.size_encoder(fourier_features(size, self.size_features))

    def coordinate_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., dim) → (..., n_coord_bins)."""
        return self.coord_decoder(hidden)

    def size_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., dim) → (..., 2, n_size_bins): row 0 width, row 1 height."""
        return self.size_decoder(hidden).unflatten(-1, (2, self.config.n_size_bins))

    def coordinate_value(self, bins: torch.Tensor) -> torch.Tensor:
        return bins.double() / self.config.n_coord_bins

    def size_value(self, bins: torch.Tensor) -> torch.Tensor:
        n = self.config.n_size_bins
        if self.config.size_bins == "log":
            return torch.pow(2.0, bins.double() / (n - 1) * 10.0 - 10.0)
        return bins.double() / n

    def decode_coordinate(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.coordinate_value(self.coordinate_logits(hidden).argmax(-1))

    def decode_size(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.size_value(self.size_logits(hidden).argmax(-1))
