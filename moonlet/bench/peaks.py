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
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

from ..quant import kernels  # noqa: F401  (defines torch.ops.moonlet.packed_linear)
from .measure import median_time, peak_bytes


def _matmul_flops(x_shape, *args, out_shape=None, **kwargs) -> int:
    """2 · M · K · N for a kernel taking activations (M, K) and giving (M, N)."""
    rows, k = x_shape
    return 2 * rows * k * out_shape[-1]


# The quantised kernels are matmuls too: count them as the dense product they stand for.
for _op in (
    torch.ops.moonlet.packed_linear,
    torch.ops.quantized.linear_dynamic,  # what the packed layers call in eager mode
    torch.ops.quantized.linear_dynamic_fp16,
    torch.ops.mkldnn._linear_pointwise,
    torch.ops.aten._weight_int8pack_mm,
    torch.ops.aten._weight_int4pack_mm_for_cpu,
    torch.ops.aten._weight_int4pack_mm,
):
    register_flop_formula(_op)(_matmul_flops)


def flops_of(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call of ``fn`` (matmuls, convolutions, attention), counted by
    PyTorch's FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        fn()
    return counter.get_total_flops()


def linear_floor_seconds(
    part: nn.Module, fn: Callable[[], object], device: torch.device, dtype: torch.dtype, repeats: int = 3
) -> tuple[float, int]:
    """Seconds the linear layers (dense or quantised) of ``part`` take in one call of ``fn``, each
    timed alone on random activations at the row count it got there, with its own kernel: the
    floor the part's time is read against. Also the number of linear calls."""
    calls: dict[tuple, list] = {}  # (kind, in, out, kernel, rows) → [a layer of that kind, calls]

    def record(layer: nn.Module, args: tuple) -> None:
        rows = args[0].numel() // layer.in_features
        key = (type(layer).__name__, layer.in_features, layer.out_features, getattr(layer, "kernel", "dense"), rows)
        calls.setdefault(key, [layer, 0])[1] += 1

    hooks = [m.register_forward_pre_hook(record) for m in part.modules() if hasattr(m, "in_features")]
    try:
        with torch.inference_mode():
            fn()
    finally:
        for hook in hooks:
            hook.remove()
    seconds = 0.0
    with torch.inference_mode():
        for (*_, rows), (layer, count) in calls.items():
            x = torch.randn(rows, layer.in_features, device=device).to(dtype)
            seconds += count * median_time(lambda layer=layer, x=x: layer(x), device, repeats, warmup=1)
    return seconds, sum(count for _, count in calls.values())


def flop_shares(model, plan, vision_fn, vision_ms: float, prefill_fn, prefill_ms: float) -> dict:
    """Vision (one crop) and prefill against the time their own linear layers take alone at the
    same shapes and kernels (``linear_floor_seconds``): the share of the part's time that is its
    matmuls at their measured rate, and the part's FLOPs."""
    shares = {}
    parts = (("vision_1crop", model.vision, vision_fn, vision_ms), ("prefill", model.text, prefill_fn, prefill_ms))
    for name, part, fn, ms in parts:
        floor, calls = linear_floor_seconds(part, fn, plan.device, plan.dtype)
        shares[name] = {
            "gflop": round(flops_of(fn) / 1e9, 2),
            "linear_calls": calls,
            "linear_floor_ms": round(floor * 1e3, 1),
            "share_of_linear_floor": round(floor * 1e3 / ms, 3),
        }
    return shares


def load_peak_bytes(checkpoint: str | Path, quant: str | None = None, dtype: str | None = None) -> int:
    """Peak resident memory of building the model of ``checkpoint`` (a directory with config.json and
    model.safetensors) in a fresh process, as ``moonlet.load`` builds it (tokenizer aside)."""
    command = [sys.executable, "-m", "moonlet.bench.peaks", str(checkpoint)]
    if quant and quant != "none":
        command += ["--quant", quant]
    if dtype:
        command += ["--dtype", dtype]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"loading {checkpoint} failed: {done.stderr.strip()[-500:]}")
    return int(json.loads(done.stdout)["peak_rss_bytes"])


def load_peaks(directory: str | Path, config, quants=("none", "int8", "int4")) -> dict[str, int]:
    """Peak RSS of loading a checkpoint of ``config``'s dimensions, per quantisation. A checkpoint
    with random weights, stored in bfloat16 as the releases are, is written to ``directory`` first
    unless one is there."""
    from ..checkpoints.save import save_pretrained
    from .models import random_model

    directory = Path(directory)
    if not (directory / "model.safetensors").is_file():
        model = random_model(config, torch.device("cpu"), torch.bfloat16)
        save_pretrained(model, directory, dtype=torch.bfloat16)
        del model
    return {quant: load_peak_bytes(directory, quant) for quant in quants}


def main(argv: list[str] | None = None) -> int:
    """``python -m moonlet.bench.peaks DIR [--quant Q] [--dtype D]``: build the model, print the peak RSS."""
    import argparse
    import resource

    from ..checkpoints.loading import build_planned, read_config, resolve_local
    from ..quant.formats import weight_formats

    parser = argparse.ArgumentParser(prog="python -m moonlet.bench.peaks")
    parser.add_argument("checkpoint")
    parser.add_argument("--quant", choices=["int8", "int4"])
    parser.add_argument("--dtype")
    args = parser.parse_args(argv)
    resolved = resolve_local(Path(args.checkpoint))
    model = build_planned(read_config(resolved, None), resolved.weights, torch.device("cpu"), args.dtype, args.quant)
    # VmHWM belongs to this process's own memory map; ru_maxrss also keeps the parent's resident
    # size at the fork (a bench that has just written the checkpoint: about 4 GB)
    peak = peak_bytes(torch.device("cpu")) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss_bytes": peak, "formats": weight_formats(model)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
