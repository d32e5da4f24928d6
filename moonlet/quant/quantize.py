"""Quantising a whole model in place: which ``nn.Linear`` layers are replaced, and the memory accounting.

Quantise once the model is on its final device (``quantize_(moonlet.load(...), "int8")``).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterable

import torch
from torch import nn

from .kernels import Int4Linear, Int8Linear

MODES = ("int8", "int4")
PARTS = ("text", "vision", "region")


def _target(model) -> nn.Module:
    """A ``MoondreamModel``, or the ``.model`` of a ``moonlet.Moondream``."""
    return model if isinstance(model, nn.Module) else model.model


def tensor_bytes(module: nn.Module) -> int:
    """Bytes of all parameters and buffers (packed weights included)."""
    tensors = list(module.parameters()) + [b for b in module.buffers() if b is not None]
    return sum(t.numel() * t.element_size() for t in tensors)


def release_freed_memory() -> None:
    """Hand the replaced float weights' memory back to the OS: glibc keeps freed heap pages
    resident otherwise (about 0.2 GB at full size). A no-op where glibc is not the allocator."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def quantize_(
    model,
    mode: str = "int8",
    include: Iterable[str] = ("text",),
    group_size: int = 128,
    kernel: str = "auto",
) -> dict:
    """Replace the ``nn.Linear`` layers of the named parts (``text``, ``vision``, ``region``) in place.

    int4 leaves layers whose input width is not a multiple of ``group_size`` in floating point.
    Returns a summary: layers replaced and skipped, bytes before and after, kernels used.
    Encoded images cached before the call keep their old keys and values: quantise right
    after loading.
    """
    if mode not in MODES:
        raise ValueError(f"unknown quantisation mode {mode!r}; use one of {MODES}")
    net = _target(model)
    include = tuple(include)
    unknown = set(include) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; use any of {PARTS}")
    before = tensor_bytes(net)
    replaced, skipped, kernels = [], [], {}
    for part in include:
        root = getattr(net, part, None)
        if root is None:
            continue
        for name, module in list(root.named_modules()):
            for child_name, child in list(module.named_children()):
                if type(child) is not nn.Linear:
                    continue
                full = f"{part}.{name + '.' if name else ''}{child_name}"
                if mode == "int4" and child.in_features % group_size:
                    skipped.append(full)
                    continue
                with torch.no_grad():
                    new = Int8Linear(child, kernel) if mode == "int8" else Int4Linear(child, group_size, kernel)
                setattr(module, child_name, new)
                replaced.append(full)
                kernels[new.kernel] = kernels.get(new.kernel, 0) + 1
    release_freed_memory()
    return {
        "mode": mode,
        "replaced": len(replaced),
        "skipped": skipped,
        "kernels": kernels,
        "bytes_before": before,
        "bytes_after": tensor_bytes(net),
    }
