"""Phi-1.5 style text decoder: parallel attention + MLP blocks with one LayerNorm each."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import TextConfig
from ..generation.kv_cache import KVCache
from .layers import MLP, merge_heads, split_heads
from .lora import LayerAdapter, TextAdapter, add_update
from .rotary import apply_rotary, rotary_tables


def attention_mask(query_positions: torch.Tensor, key_positions: torch.Tensor, prefix_len: int) -> torch.Tensor:
    """Boolean mask (B, 1, T, S) from query positions (B, T) and key positions (B, S) or (S,).

    Causal, except that positions below ``prefix_len`` (BOS + image) see each other;
    ``prefix_len = 0`` gives a fully causal mask.
    """
    query = query_positions[:, :, None]  # B, T, 1
    keys = key_positions[:, None, :] if key_positions.dim() == 2 else key_positions  # B, 1, S
    allowed = keys <= query
    if prefix_len:
        allowed = allowed | ((query < prefix_len) & (keys < prefix_len))
    return allowed[:, None]


class TextAttention(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.n_kv_heads = config.n_kv_heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.dim, (config.n_heads + 2 * config.n_kv_heads) * config.head_dim)
        self.proj = nn.Linear(config.dim, config.dim)

    def forward(self, x, cos, sin, positions, mask, layer_cache=None, lora: LayerAdapter | None = None):
        qk_heads = self.n_heads + self.n_kv_heads
        qkv = self.qkv(x) if lora is None else add_update(self.qkv(x), lora.qkv, x)
        qk, v = qkv.split((qk_heads * self.head_dim, self.n_kv_heads * self.head_dim), dim=-1)
        # queries and keys rotated in one call: (B, H + KV, T, D), then split by heads
        q, k = apply_rotary(split_heads(qk, qk_heads), cos, sin).split((self.n_heads, self.n_kv_heads), dim=1)
        v = split_heads(v, self.n_kv_heads)
        if layer_cache is not None:  # attention runs in the cache's dtype (float32 on CPU)
            layer_cache.write(positions, k, v)
            k, v = layer_cache.read(mask.shape[-1])
        out = F.scaled_dot_product_attention(
            q.to(k.dtype), k, v, attn_mask=mask, enable_gqa=self.n_kv_heads != self.n_heads
        )
        merged = merge_heads(out).to(x.dtype)
        if lora is None:
            return self.proj(merged)
        return add_update(add_update(self.proj(merged), lora.proj, merged), lora.proj_from_input, x)


class TextBlock(nn.Module):
    """h = ln(x); x + attn(h) + mlp(h)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.ln = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.attn = TextAttention(config)
        self.mlp = MLP(config.dim, config.ff_dim, gelu=config.gelu)

    def forward(self, x, cos, sin, positions, mask, layer_cache=None, lora: LayerAdapter | None = None):
        h = self.ln(x)
        if lora is None:
            return x + self.attn(h, cos, sin, positions, mask, layer_cache) + self.mlp(h)
        mlp = self.mlp
        inner = F.gelu(add_update(mlp.fc1(h), lora.fc1, h), approximate=mlp.approximate)
        return (
            x + self.attn(h, cos, sin, positions, mask, layer_cache, lora) + add_update(mlp.fc2(inner), lora.fc2, inner)
        )


class TextDecoder(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Parameter(torch.zeros(config.vocab_size, config.dim))
        self.blocks = nn.ModuleList(TextBlock(config) for _ in range(config.n_layers))
        self.post_ln = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(config.dim, config.vocab_size)
        self.init_buffers()

    def init_buffers(self, device: torch.device | str | None = None) -> None:
        """(Re)build the float32 rotary tables; needed after building on the meta device."""
        cos, sin = rotary_tables(self.config.rotary_dim, self.config.max_context, self.config.rope_theta)
        self.register_buffer("rope_cos", cos.to(device), persistent=False)
        self.register_buffer("rope_sin", sin.to(device), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (the table ``wte`` may be stored narrower: a lookup reads one row)."""
        return self.post_ln.weight.dtype

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids → (B, T, dim)."""
        return F.embedding(ids, self.wte).to(self.dtype)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        cache: KVCache | None = None,
        rows: slice = slice(None),
        adapter: TextAdapter | None = None,
    ) -> torch.Tensor:
        """Run the blocks on embeddings x (B, T, dim) at positions (B, T), with a variant's updates if given.

        mask is (B, 1, T, S): over the T new tokens without a cache, over the first S cache
        positions with one (the new keys are written into ``cache`` rows ``rows`` first).
        Returns the hidden state before ``post_ln`` (what the region heads read).
        """
        cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        for index, block in enumerate(self.blocks):
            layer_cache = cache.layer(index, rows) if cache is not None else None
            x = block(x, cos, sin, positions, mask, layer_cache, adapter.layers[index] if adapter else None)
        return x

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.post_ln(hidden))
