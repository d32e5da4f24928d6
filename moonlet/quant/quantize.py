"""Quantising a whole model in place: which ``nn.Linear`` layers are replaced, and the memory accounting.

Quantise once the model is on its final device (``quantize_(moonlet.load(...), "int8")``).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterable

import torch
from torch import nn

from .kernels import Bf16Linear, Fp16Linear, Int4Linear, Int8Linear, QuantLinear

MODES = ("int8", "int4")
WEIGHT_FORMATS = ("fp16", "bf16", *MODES)  # fp16, bf16: 16-bit weights, not a quantisation (see kernels)
PARTS = ("text", "vision", "region")


def _target(model) -> nn.Module:
    """A ``MoondreamModel``, or the ``.model`` of a ``moonlet.Moondream``."""
    return model if isinstance(model, nn.Module) else model.model


def tensor_bytes(module: nn.Module) -> int:
    """Bytes of all parameters and buffers, quantised layers' weights in their kernel's form."""
    quantised = [m for m in module.modules() if isinstance(m, QuantLinear)]
    inside = {id(t) for m in quantised for t in m.buffers()}
    tensors = [t for t in list(module.parameters()) + list(module.buffers()) if t is not None and id(t) not in inside]
    bias = sum(m.bias.numel() * m.bias.element_size() for m in quantised if m.bias is not None)
    return sum(t.numel() * t.element_size() for t in tensors) + sum(m.weight_bytes() for m in quantised) + bias


def quantised_linear(
    mode: str,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    group_size: int,
    kernel: str,
    dtype: torch.dtype | None = None,
):
    """The layer of ``mode`` (``WEIGHT_FORMATS``) for one linear layer's weight (out, in) and bias,
    for activations of ``dtype`` (default: the weight's)."""
    if mode == "int8":
        return Int8Linear(weight, bias, kernel, dtype)
    if mode == "int4":
        # no group fits: Int4Linear refuses the asked size with its own error
        return Int4Linear(weight, bias, int4_group(weight.shape[1], group_size) or group_size, kernel, dtype)
    if mode == "fp16":
        return Fp16Linear(weight, bias, kernel, dtype)
    if mode == "bf16":
        return Bf16Linear(weight, bias, kernel, dtype)
    raise ValueError(f"unknown weight format {mode!r}; use one of {WEIGHT_FORMATS}")


# Layers a quantisation keeps wider, by full name: the output head is where 4-bit error shows most
# (moonlet-nano's int4 answers agree with float32 on 88.0 % of held-out questions with an int4 head,
# 96.7 % with an int8 one; llama.cpp's 4-bit files keep their output layer wider too).
WIDER_LAYERS = {"int4": {"text.lm_head": "int8"}}


MIN_GROUP_SIZE = 32  # the smallest int4 group the packed kernels take


def int4_group(in_features: int, group_size: int) -> int | None:
    """The int4 group of a layer ``in_features`` wide: ``group_size``, else the largest halving of
    it down to ``MIN_GROUP_SIZE`` that divides the width (a 192-wide layer takes 64 for 128);
    None where none does (the layer stays in floating point)."""
    size = group_size
    while size >= MIN_GROUP_SIZE:
        if in_features % size == 0:
            return size
        if size % 2:
            break
        size //= 2
    return None


def layer_format(mode: str, name: str, in_features: int, group_size: int) -> str | None:
    """The format the linear layer ``name`` (``part.path``, e.g. ``text.lm_head``) of this input
    width takes under ``mode`` (``WIDER_LAYERS`` may widen it), or None where it stays in floating
    point (int4 needs whole groups)."""
    layer = WIDER_LAYERS.get(mode, {}).get(name, mode)
    return None if layer == "int4" and int4_group(in_features, group_size) is None else layer


def trim_heap() -> None:
    """Hand freed heap pages back to the OS: glibc keeps them resident otherwise. A no-op where
    glibc is not the allocator."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def release_freed_memory() -> None:
    """Collect the replaced float weights (about 0.2 GB at full size) and trim the heap."""
    gc.collect()
    trim_heap()


def quantize_(
    model,
    mode: str = "int8",
    include: Iterable[str] = ("text",),
    group_size: int = 128,
    kernel: str = "auto",
) -> dict:
    """Replace the ``nn.Linear`` layers of the named parts (``text``, ``vision``, ``region``) in place.

    int4 groups ``group_size`` inputs, or fewer where the width asks for it (``int4_group``);
    layers no group fits stay in floating point; ``WIDER_LAYERS`` (int4's output head) take more bits.
    Returns a summary: layers replaced and skipped, bytes before and after, kernels used, the
    layers kept wider.
    Encoded images cached before the call keep their old keys and values: quantise right
    after loading.
    """
    if mode not in WEIGHT_FORMATS:
        raise ValueError(f"unknown quantisation mode {mode!r}; use one of {MODES} (or 16-bit weights: fp16, bf16)")
    net = _target(model)
    include = tuple(include)
    unknown = set(include) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; use any of {PARTS}")
    before = tensor_bytes(net)
    replaced, skipped, kernels, groups, wider = [], [], {}, {}, {}
    for part in include:
        root = getattr(net, part, None)
        if root is None:
            continue
        for name, module in list(root.named_modules()):
            for child_name, child in list(module.named_children()):
                if type(child) is not nn.Linear:
                    continue
                full = f"{part}.{name + '.' if name else ''}{child_name}"
                layer = layer_format(mode, full, child.in_features, group_size)
                if layer is None:
                    skipped.append(full)
                    continue
                with torch.no_grad():
                    new = quantised_linear(layer, child.weight.detach(), child.bias, group_size, kernel)
                setattr(module, child_name, new)
                replaced.append(full)
                kernels[new.kernel] = kernels.get(new.kernel, 0) + 1
                if layer != mode:
                    wider[full] = layer
                elif mode == "int4":
                    groups[new.group_size] = groups.get(new.group_size, 0) + 1
    release_freed_memory()
    return {
        "mode": mode,
        "replaced": len(replaced),
        "skipped": skipped,
        "kernels": kernels,
        **({"group_sizes": groups} if mode == "int4" else {}),
        "wider": wider,
        "bytes_before": before,
        "bytes_after": tensor_bytes(net),
    }
