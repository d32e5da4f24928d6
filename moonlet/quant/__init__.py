"""Weight-only quantisation: swap ``nn.Linear`` layers for int8 or int4 versions after loading.

- ``kernels``: the quantised layers (``Int8Linear``, ``Int4Linear``) and their kernels;
- ``quantize``: ``quantize_`` a model's parts in place, ``tensor_bytes``, ``release_freed_memory``.

How much a mode costs in answers is measured by ``python -m moonlet.eval.agreement``
(docs/benchmarks.md).
"""

from .kernels import (
    KERNELS,
    Int4Linear,
    Int8Linear,
    QuantLinear,
    int4_weights,
    int8_weights,
    pack_nibbles,
    unpack_nibbles,
)
from .quantize import MODES, PARTS, quantize_, release_freed_memory, tensor_bytes

__all__ = [
    "KERNELS",
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
