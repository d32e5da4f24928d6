"""Time every fp16/bf16/int8/int4 matmul kernel against the dense one, at the decoder's layer shapes."""

from __future__ import annotations

import torch
from torch import nn

from ..config import MoondreamConfig
from ..modeling.init import init_uniform_
from ..quant import quantised_linear
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
    for mode, kernels in (
        ("fp16", ("fbgemm",)),
        ("bf16", ("onednn",)),
        ("int8", ("fbgemm", "pack", "dequant")),
        ("int4", ("pack", "dequant")),
    ):
        for kernel in kernels:
            try:
                variants[f"{mode}_{kernel}"] = [
                    quantised_linear(mode, layer.weight.detach(), layer.bias, 128, kernel) for layer in dense
                ]
            except RuntimeError:  # not on this device or dtype
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
