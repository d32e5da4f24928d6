"""Figures read against what the hardware allows: FLOP counts, the GEMM rate of a shape, and the
peak memory of loading a checkpoint (in a fresh process, so nothing else is resident)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .measure import median_time


def flops_of(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call of ``fn`` (matmuls, convolutions, attention), counted by
    PyTorch's FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        fn()
    return counter.get_total_flops()


def largest_linear(module: nn.Module) -> tuple[int, int]:
    """(in, out) of the ``module``'s largest linear layer: the GEMM shape its time is read against."""
    shapes = [(m.in_features, m.out_features) for m in module.modules() if hasattr(m, "in_features")]
    return max(shapes, key=lambda shape: shape[0] * shape[1])


def gemm_rate(rows: int, k: int, n: int, device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """FLOP/s of a (rows, k) @ (k, n) matmul in ``dtype``: the hardware's rate for that shape."""
    a = torch.randn(rows, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    seconds = median_time(lambda: a @ b, device, repeats, warmup=2)
    return 2 * rows * k * n / seconds


def share_of_peak(flops: int, seconds: float, peak_flops_per_s: float) -> float:
    """Achieved FLOP/s as a share of the shape's GEMM rate."""
    return flops / seconds / peak_flops_per_s


def load_peak_bytes(checkpoint: str | Path, quant: str | None = None, dtype: str | None = None) -> int:
    """Peak resident memory of ``moonlet info`` loading ``checkpoint`` in a fresh process."""
    command = [sys.executable, "-m", "moonlet", "info", "--model", str(checkpoint), "--device", "cpu"]
    if quant and quant != "none":
        command += ["--quant", quant]
    if dtype:
        command += ["--dtype", dtype]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"loading {checkpoint} failed: {done.stderr.strip()[-500:]}")
    return int(json.loads(done.stdout)["peak_rss_bytes"])
