"""Weight formats chosen at load time, and the linear layers built straight from the checkpoint.

``load_formats`` says which parts' linear layers take which format (``fp16``, ``int8``, ``int4``)
when a model is loaded: what the user asked for (``quant``), else the kernel plan's unquantised
choice for the text decoder. ``QuantisingReader`` is the hook ``read_checkpoint`` calls with each
tensor: a targeted layer's weight is turned into its quantised layer on the spot, so the float
weights of the whole model never exist together: each arrives in its stored dtype and is quantised
a block of rows at a time (the peak is the result plus one stored tensor).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from .dispatch import KernelPlan
from .kernels import QuantLinear
from .quantize import MODES, PARTS, layer_format, quantised_linear, release_freed_memory

# The 16-bit weight formats (not quantisations: the kernel plan's choice for unquantised layers) and
# the stored dtypes each holds exactly: float16 holds bfloat16's values in range; bf16 is taken only
# where the model computes in bfloat16, which a CPU load does for a bfloat16 checkpoint
EXACT_STORED = {"fp16": ("bfloat16", "float16"), "bf16": ("bfloat16",)}
SIXTEEN_BIT = tuple(EXACT_STORED)
# packed 16-bit weights only pay where the bytes do: small layers stay plain (moonlet-nano's are all below)
PACKED_MIN_WEIGHTS = 1 << 20
# Parts whose large layers take the plan's 16-bit weights by default: float16 is as fast or faster
# than float32 in decode and prefill on AVX2 at half the bytes, packed bfloat16 faster than plain
# on a CPU with native bf16 (docs/benchmarks.md); the region head decodes one row at a time, where
# bytes are the time.
DENSE_PARTS = ("text", "vision", "region")
# Tensors read as a table (one row per token), kept in the checkpoint's dtype when it is narrower
# than the model's: exact, half the memory, no cost in speed.
LOOKUP_TABLES = ("text.wte",)


def load_formats(
    plan: KernelPlan,
    stored_dtype: str,
    dtype_given: bool,
    quant: str | None = None,
    parts: Iterable[str] = ("text",),
) -> dict[str, str]:
    """Part name → weight format for loading. When no dtype was asked for, the plan's 16-bit weights
    apply to ``DENSE_PARTS`` where they hold the stored values exactly: packed ``bf16`` for a
    bfloat16 checkpoint (the model's dtype then), ``fp16`` for a bfloat16 or float16 one; ``quant``
    (int8 / int4) then applies to ``parts`` (an int8 text decoder keeps a 16-bit vision tower)."""
    parts = tuple(parts)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)} to quantise; use any of {PARTS}")
    if quant is not None and quant not in MODES:
        raise ValueError(f"unknown quant {quant!r}; use one of {MODES} (or None)")
    formats = {}
    dense = plan.dense.value
    if not dtype_given and stored_dtype in EXACT_STORED.get(dense, ()):
        formats = dict.fromkeys(DENSE_PARTS, dense)
    if quant is not None:
        formats |= dict.fromkeys(parts, quant)
    return formats


def linear_targets(model: nn.Module, formats: Mapping[str, str], group_size: int = 128) -> dict[str, str]:
    """Module name → format, for every ``nn.Linear`` of the parts in ``formats`` that takes it."""
    targets = {}
    for part, mode in formats.items():
        root = getattr(model, part, None)
        if root is None:
            continue
        for name, module in root.named_modules():
            if type(module) is not nn.Linear:
                continue
            layer = layer_format(mode, f"{part}.{name}", module.in_features, group_size)
            small = module.in_features * module.out_features < PACKED_MIN_WEIGHTS
            if layer is None or (layer in SIXTEEN_BIT and small):
                continue
            targets[f"{part}.{name}"] = layer
    return targets


def _replace(model: nn.Module, name: str, layer: nn.Module) -> None:
    """Put ``layer`` at the dotted module path ``name`` of ``model``."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, layer)


def apply_formats(model: nn.Module, formats: Mapping[str, str], group_size: int = 128) -> dict[str, int]:
    """Replace the linear layers of a model already built in float (random weights in the bench) as a
    load with these ``formats`` builds them (``linear_targets``); returns ``weight_formats``."""
    for name, layer in linear_targets(model, formats, group_size).items():
        old = model.get_submodule(name)
        with torch.no_grad():
            _replace(model, name, quantised_linear(layer, old.weight.detach(), old.bias, group_size, "auto"))
    release_freed_memory()
    return weight_formats(model)


class QuantisingReader:
    """``consume`` hook of ``read_checkpoint``: builds each targeted layer from its weight as it is read,
    and keeps the ``narrow`` tensors (lookup tables) in a stored dtype narrower than ``dtype``;
    ``install(model, state)`` puts the layers in place with their biases from ``state``."""

    def __init__(
        self,
        targets: Mapping[str, str],
        group_size: int = 128,
        kernel: str = "auto",
        dtype: torch.dtype | None = None,
        narrow: Iterable[str] = (),
    ):
        self.targets = dict(targets)
        self.group_size = group_size
        self.kernel = kernel
        self.dtype = dtype  # the model's compute dtype (the weights arrive in the checkpoint's)
        self.narrow = set(narrow)
        self.layers: dict[str, nn.Module] = {}
        self.kept: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, tensor: torch.Tensor) -> bool:
        if name in self.narrow and self.dtype is not None and tensor.element_size() < self.dtype.itemsize:
            self.kept[name] = tensor.contiguous()
            return True
        module, _, leaf = name.rpartition(".")
        mode = self.targets.get(module)
        if mode is None or leaf != "weight":
            return False
        with torch.no_grad():
            self.layers[module] = quantised_linear(mode, tensor, None, self.group_size, self.kernel, self.dtype)
        return True

    def install(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Replace the targeted layers (their biases taken out of ``state``)."""
        missing = sorted(set(self.targets) - set(self.layers))
        if missing:
            raise ValueError(f"no weight was read for {missing[:4]}")
        state.update(self.kept)
        for name, layer in self.layers.items():
            layer.bias = state.pop(f"{name}.bias", None)
            _replace(model, name, layer)


def weight_formats(model: nn.Module) -> dict[str, int]:
    """How many linear layers hold each format and kernel, e.g. ``{"int8/fbgemm": 97, "float32": 60}``."""
    counts: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, QuantLinear):
            key = f"{type(module).__name__.removesuffix('Linear').lower()}/{module.kernel}"
        elif type(module) is nn.Linear:
            key = str(module.weight.dtype).removeprefix("torch.")
        else:
            continue
        counts[key] = counts.get(key, 0) + 1
    return counts
