"""Weight-only quantisation: swap ``nn.Linear`` layers for int8 or int4 versions after loading.

- ``kernels``: the quantised layers (``Int8Linear``, ``Int4Linear``) and their kernels;
- ``quantize``: ``quantize_`` a model's parts in place, ``tensor_bytes``, ``release_freed_memory``;
- ``dispatch``: what this CPU is (``detect_cpu``) and the dtype and kernels it runs fastest (``plan_for``).

How much a mode costs in answers is measured by ``python -m moonlet.eval.agreement``
(docs/benchmarks.md).
"""

from .dispatch import CpuKind, KernelPlan, detect_cpu, plan_for
from .kernels import (
    KERNELS,
    Bf16Linear,
    Fp16Linear,
    Int4Linear,
    Int8Linear,
    QuantLinear,
    int4_weights,
    int8_weights,
    pack_nibbles,
    unpack_nibbles,
)
from .quantize import (
    MODES,
    PARTS,
    WEIGHT_FORMATS,
    layer_format,
    quantised_linear,
    quantize_,
    release_freed_memory,
    tensor_bytes,
)

__all__ = [
    "KERNELS",
    "WEIGHT_FORMATS",
    "Bf16Linear",
    "CpuKind",
    "Fp16Linear",
    "KernelPlan",
    "detect_cpu",
    "layer_format",
    "plan_for",
    "quantised_linear",
    "MODES",
    "PARTS",
    "Int4Linear",
    "Int8Linear",
    "QuantLinear",
    "int4_weights",
    "int8_weights",
    "pack_nibbles",
    "quantize_",
    "release_freed_memory",
    "tensor_bytes",
    "unpack_nibbles",
]
