"""Measurement helpers: median wall times, peak and resident memory, free memory, copy bandwidth,
and the bytes a decode step must read."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import torch

from ..config import MoondreamConfig
from ..modeling.model import MoondreamModel
from ..quant import tensor_bytes


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall time of ``fn`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: writing 5 resets the peak resident set size (VmHWM) to the current one
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_bytes(device: torch.device) -> int | None:
    """CUDA: max_memory_allocated; CPU: the process's peak resident set size (VmHWM)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return _proc_status("VmHWM:")


def resident_bytes(device: torch.device) -> int | None:
    """CUDA: memory_allocated; CPU: the process's resident set size now (VmRSS)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return _proc_status("VmRSS:")


def _proc_status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def copy_bandwidth(device: torch.device, nbytes: int | None = None) -> float:
    """Bytes per second moved by a large tensor copy (each byte read once and written once)."""
    nbytes = nbytes or (2 << 30 if device.type == "cuda" else 512 << 20)
    source = torch.ones(nbytes, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    seconds = median_time(lambda: target.copy_(source), device, repeats=5, warmup=2)
    return 2 * nbytes / seconds


def step_intervals(stamps: list[float]) -> list[float]:
    """Decode step times from the arrival times of each step's tokens, the first token onwards."""
    return [b - a for a, b in zip(stamps, stamps[1:])]


def kv_bytes_per_slot(config: MoondreamConfig, dtype: torch.dtype, length: int | None = None) -> int:
    text = config.text
    length = length or text.max_context
    return 2 * text.n_layers * text.n_kv_heads * length * text.head_dim * torch.empty((), dtype=dtype).element_size()


def decode_bytes_per_token(model: MoondreamModel, kv_len: int) -> int:
    """Bytes one batch-1 decode step must read: decoder weights (not the embedding table) and the keys/values."""
    text = model.text
    skip = text.wte.numel() * text.wte.element_size()
    skip += sum(b.numel() * b.element_size() for b in (text.rope_cos, text.rope_sin))
    return tensor_bytes(text) - skip + kv_bytes_per_slot(model.config, model.dtype, kv_len)


def mib(value: int | None) -> float | None:
    return None if value is None else value / 2**20
