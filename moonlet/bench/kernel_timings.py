"""Time the int8/int4 matmul kernels against the dense one, at the decoder's layer shapes."""

from __future__ import annotations

import torch
from torch import nn

from ..config import MoondreamConfig
from ..modeling.init import init_uniform_
from ..quant import Int4Linear, Int8Linear
from .measure import median_time


@torch.inference_mode()
def kernel_timings(
    config: MoondreamConfig, device: torch.device, dtype: torch.dtype, rows: list[int], plan_repeats: int
) -> dict:
    """ms per decoder layer's four matmuls (qkv, proj, fc1, fc2), two layers cycled so weights leave the cache."""
    t = config.text
    qkv_rows = (t.n_heads + 2 * t.n_kv_heads) * t.head_dim
    shapes = [(t.dim, qkv_rows), (t.dim, t.dim), (t.dim, t.ff_dim), (t.ff_dim, t.dim)]
    dense = []
    for index, (k, n) in enumerate(shapes * 2):
        layer = nn.Linear(k, n).to(device, dtype)
        init_uniform_(layer, index)
        dense.append(layer)
    variants = {"dense": dense}
    for kernel in ("pack", "dequant"):
        try:
            variants[f"int8_{kernel}"] = [Int8Linear.from_linear(layer, kernel) for layer in dense]
        except RuntimeError:
            pass
        try:
            variants[f"int4_{kernel}"] = [Int4Linear.from_linear(layer, 128, kernel) for layer in dense]
        except RuntimeError:
            pass
    result = {}
    for m in rows:
        x = torch.randn(m, t.dim, device=device).to(dtype)
        xs = {t.dim: x, t.ff_dim: torch.randn(m, t.ff_dim, device=device).to(dtype)}
        row = {}
        for name, layers in variants.items():

            def run(layers=layers, xs=xs):
                for layer in layers:
                    layer(xs[layer.in_features])

            row[name] = 1e3 * median_time(run, device, plan_repeats, 1) / 2
        result[str(m)] = row
    return result
