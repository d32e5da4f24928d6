"""The Moondream model: vision encoder, text decoder and region heads, composed.

The model is pure: it computes forward passes over token ids and embeddings. Caches,
sampling and stopping live in ``moonlet.generation.engine``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import MoondreamConfig
from ..generation.kv_cache import KVCache
from ..image import Crops, ImageInput, make_crops, pool_to_grid, reconstruct_from_crops, resize_to_grid
from .lora import TextAdapter
from .region import RegionModel
from .text import TextDecoder, attention_mask
from .vision import VisionEncoder


class MoondreamModel(nn.Module):
    def __init__(self, config: MoondreamConfig):
        super().__init__()
        self.config = config.validate()
        self.vision = VisionEncoder(config.vision)
        self.text = TextDecoder(config.text)
        self.region = RegionModel(config.region) if config.region.enabled else None

    def init_buffers(self, device: torch.device | str | None = None) -> None:
        """Compute the derived tables (rotary, fixed positions) after weights are assigned or
        a model built on the meta device is materialised."""
        self.text.init_buffers(device)
        self.vision.init_buffers(device)

    @property
    def device(self) -> torch.device:
        return self.text.wte.device

    @property
    def dtype(self) -> torch.dtype:
        return self.text.dtype

    @property
    def prefix_len(self) -> int:
        return self.config.prefix_len

    @property
    def mask_prefix_len(self) -> int:
        """Length of the bidirectional block at the start of image sequences (0: fully causal)."""
        return self.prefix_len if self.config.text.prefix_bidirectional else 0

    # --- vision ---------------------------------------------------------------------------

    def crops(self, image: ImageInput) -> Crops:
        return make_crops(image, self.config.vision)

    @torch.inference_mode()
    def image_embedding(self, crops: Crops) -> torch.Tensor:
        """Crops → (grid², text dim): projected features in row-major grid order."""
        return self.embed_pixels(crops.normalized().to(self.device, self.dtype), crops.tiling)

    def embed_pixels(self, pixels: torch.Tensor, tiling: tuple[int, int]) -> torch.Tensor:
        """(n_crops, C, S, S) normalised crops → (grid², text dim); differentiable (training)."""
        return self.project_features(self.vision(pixels), tiling)

    def project_features(self, features: torch.Tensor, tiling: tuple[int, int]) -> torch.Tensor:
        """(n_crops, grid², enc_dim) vision features → (grid², text dim): tiles merged, projected."""
        vision = self.config.vision
        if vision.crop_scheme == "single":
            return self.vision.proj_mlp(features[0])
        grid = vision.grid_size
        tiles = features[1:].view(-1, grid, grid, vision.enc_dim)
        if vision.crop_scheme == "grid":  # whole tiles side by side, resized bilinearly
            rows, cols = tiling
            stitched = (
                tiles.view(rows, cols, grid, grid, -1).permute(0, 2, 1, 3, 4).reshape(rows * grid, cols * grid, -1)
            )
            local = resize_to_grid(stitched, grid)
        else:  # overlapping tiles: margins dropped, then adaptive average pooling
            stitched = reconstruct_from_crops(tiles, tiling, vision.overlap_margin)
            local = pool_to_grid(stitched, grid)
        local = local.reshape(grid * grid, vision.enc_dim)
        return self.vision.proj_mlp(torch.cat((features[0], local), dim=-1))

    # --- text -----------------------------------------------------------------------------

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text.embed(ids)

    def bos_embedding(self) -> torch.Tensor:
        """(1, dim)"""
        return self.text.embed(torch.tensor([self.config.tokenizer.bos_id], device=self.device))

    def prefix_embeddings(self, image_embedding: torch.Tensor, open_ids: list[int] = ()) -> torch.Tensor:
        """(grid², dim) → (1, 1 + len(open_ids) + grid², dim): BOS, any opening text, the image."""
        parts = [self.bos_embedding()]
        if open_ids:
            parts.append(self.embed_tokens(torch.tensor(list(open_ids), device=self.device)))
        parts.append(image_embedding.to(self.dtype))
        return torch.cat(parts, dim=0)[None]

    def forward_embeddings(
        self,
        embeddings: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache | None = None,
        rows: slice = slice(None),
        kv_len: int | None = None,
        mask_prefix_len: int | None = None,
        adapter: TextAdapter | None = None,
    ) -> torch.Tensor:
        """Run the decoder over (B, T, dim) embeddings at (B, T) positions; returns hidden (B, T, dim).

        With a cache, new keys are written at ``positions`` of cache rows ``rows`` and attention
        covers the first ``kv_len`` cache positions (default: up to the largest position). ``adapter``: a
        LoRA variant's updates to the text blocks.
        """
        prefix = self.mask_prefix_len if mask_prefix_len is None else mask_prefix_len
        if cache is None:
            keys = positions  # the keys are the new tokens themselves
        else:
            kv_len = kv_len if kv_len is not None else int(positions.max()) + 1
            keys = torch.arange(kv_len, device=positions.device)
        mask = attention_mask(positions, keys, prefix)
        return self.text(embeddings, positions, mask, cache, rows, adapter)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.text.logits(hidden)

    def num_parameters(self) -> int:
        """Parameters, each quantised layer's weights counted as its in × out values (and its bias)."""
        quantised = sum(
            m.in_features * m.out_features + (0 if m.bias is None else m.bias.numel())
            for m in self.modules()
            if hasattr(m, "weight_bytes")
        )
        return sum(p.numel() for p in self.parameters()) + quantised
