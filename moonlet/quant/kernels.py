"""The quantised layers: ``nn.Linear`` replacements holding fp16, bf16, int8 or int4 weights.

- ``bf16``: bfloat16 weights in a packed layout, the products of ``F.linear`` in bfloat16.
- ``fp16``: float16 weights (exact for a bfloat16 checkpoint's values in float16's range), sums in
  float32: half the bytes of float32 at about float32's answers.
- ``int8``: one symmetric scale per output channel, ``w ≈ q · s`` with q in [-127, 127].
- ``int4``: asymmetric groups of ``group_size`` input channels, ``w ≈ (q − 8) · s + z`` with
  q in [0, 15] (the convention of PyTorch's tinygemm int4 kernels).

Each layer takes a kernel when it is built, on the device its weight lives on, and checks it once
against the plain dequantised reference (``dequant``: blocks of rows converted back to the
activation dtype and multiplied):

- ``onednn`` (CPU): bf16 weights reordered once for oneDNN's linear (``mkldnn._linear_pointwise``).
- ``fbgemm`` (x86): fp16 through ``quantized.linear_dynamic_fp16``; int8 through fbgemm's dynamic
  quantisation (activations quantised per call, rows brought to one scale first; 7-bit on CPUs
  without VNNI, whose 16-bit sums would saturate otherwise).
- ``pack``: int8 ``torch._weight_int8pack_mm`` and int4 ``torch._weight_int4pack_mm_for_cpu`` (CUDA:
  ``torch._weight_int4pack_mm``), with bfloat16 activations on CPU: float32 ones are 6-15x slower.
- ``auto``: what ``moonlet.quant.dispatch`` plans for this CPU (docs/benchmarks.md).

A packed layer cannot move to another device once built: quantise a model on its final device.
"""

from __future__ import annotations

import functools
import itertools
import warnings
import weakref
from collections.abc import Callable

import torch
from torch import nn

from .dispatch import detect_cpu, fbgemm_available, onednn_available, plan_for

KERNELS = ("auto", "pack", "fbgemm", "onednn", "dequant")
DEQUANT_BLOCK = 1 << 20  # weight elements converted at a time by the dequant kernels
INT8_PACK_MAX_ROWS = 8  # above this many activation rows the dequant kernel is faster (docs/benchmarks.md)
INT4_INNER_K_TILES = 8
# Rows packed at a time for the CPU int4 kernel: a multiple of its block of output rows (32 on AVX2,
# 64 on AVX-512), so the blocks' packings side by side are the whole matrix's (tests/test_quant.py).
INT4_PACK_ROWS = 1024
# Relative difference a kernel may show against the reference: it catches broken kernels (errors
# near 1), not rounding; fbgemm's 7-bit activations alone give up to 1.8 % on random weights.
CHECK_TOLERANCE = 5e-2


def _kernel_ok(reference: torch.Tensor, candidate: torch.Tensor) -> bool:
    scale = reference.float().abs().max().clamp(min=1e-6)
    return bool(((candidate.float() - reference.float()).abs().max() / scale) < CHECK_TOLERANCE)


def _rows_per_block(width: int) -> int:
    """Weight rows of ``width`` inputs in one block of about ``DEQUANT_BLOCK`` elements."""
    return max(1, DEQUANT_BLOCK // max(1, width))


def _blocked_matmul(x: torch.Tensor, rows: int, weight_block) -> torch.Tensor:
    """x (M, K) @ W.T, W built ``block`` output rows at a time by ``weight_block(start, stop)``."""
    out = x.new_empty(x.shape[0], rows)
    step = _rows_per_block(x.shape[1])
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        torch.matmul(x, weight_block(start, stop).t(), out=out[:, start:stop])
    return out


def _cpu_activations(x: torch.Tensor) -> torch.Tensor:
    """The packed CPU kernels' fast activation dtype: bfloat16 (from float32 or float16)."""
    return x.to(torch.bfloat16) if x.device.type == "cpu" else x


class QuantLinear(nn.Module):
    """Common part: shapes, bias, flattening of leading dimensions, kernel choice.

    Built from a weight (out, in) and an optional bias; ``from_linear`` takes an ``nn.Linear``.
    ``dtype`` (each kind's last argument): the activations' dtype the kernel is chosen and checked
    for, when the weight comes in another (a bfloat16 checkpoint's tensor for a float32 model).
    """

    kernel: str
    mode: str  # the key of this kind in the kernel plan (``auto``'s source)

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.built_on = weight.device
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, *args, **kwargs) -> QuantLinear:
        return cls(linear.weight.detach(), linear.bias, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = self.matmul(flat).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def weight_bytes(self) -> int:
        """Bytes the weights take in the chosen kernel's form (packed objects included)."""
        raise NotImplementedError

    def _choose(self, kernel: str, dtype: torch.dtype) -> None:
        """Take ``kernel`` (``auto``: the plan's) if it runs and agrees with the reference, else dequant."""
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; use one of {KERNELS}")
        asked = kernel
        if kernel == "auto":
            kernel = self._auto_kernel()
        self.kernel = "dequant"
        if kernel == "dequant" or not self._supported(kernel, dtype):
            if asked != "auto" and kernel != "dequant":
                raise RuntimeError(f"no {kernel} {type(self).__name__} kernel for {dtype} on this device")
            return
        probe = torch.randn(3, self.in_features, generator=torch.Generator().manual_seed(0)).to(self._device, dtype)
        expected = self.reference(probe)
        try:
            self._prepare(kernel)
            self.kernel = kernel
            ok = _kernel_ok(expected, self.matmul(probe))
        except (RuntimeError, NotImplementedError):
            ok = False
        if not ok:
            self.kernel = "dequant"
            self._release()
            if asked != "auto":
                raise RuntimeError(f"the {kernel} {type(self).__name__} kernel failed its check for {dtype}")
        else:
            self._drop_source()

    @property
    def _device(self) -> torch.device:
        return self.built_on

    def _auto_kernel(self) -> str:
        return getattr(plan_for(device=self._device), self.mode).value

    def _supported(self, kernel: str, dtype: torch.dtype) -> bool:
        return False

    def _prepare(self, kernel: str) -> None:
        """Build the kernel's own copy of the weights."""

    def _release(self) -> None:
        """Drop the kernel's copy (its check failed)."""

    def _drop_source(self) -> None:
        """Drop the reference copy once the kernel holds its own (one copy in memory)."""

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.kernel}"


# Packed weights (fbgemm's, oneDNN's) are opaque to torch.compile; each layer registers the call
# that runs its weights here and is called through one custom op that takes a handle, so a compiled
# graph stays whole.
_PACKED_CALLS: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}  # handle → x (M, K) ↦ (M, N)
_handles = itertools.count()


def register_packed(owner: nn.Module, call: Callable[[torch.Tensor], torch.Tensor]) -> int:
    """A handle for ``packed_linear``; the call (and the weights it holds) is dropped with ``owner``.
    ``call`` must not refer to ``owner``, or the owner would never be freed."""
    handle = next(_handles)
    _PACKED_CALLS[handle] = call
    weakref.finalize(owner, _PACKED_CALLS.pop, handle, None)
    return handle


def release_packed(handle: int | None) -> None:
    _PACKED_CALLS.pop(handle, None)


def fbgemm_int8(packed: object, reduce_range: bool, x: torch.Tensor) -> torch.Tensor:
    """x (M, K) float32 @ fbgemm's int8 weights, the activations quantised dynamically.

    fbgemm quantises the activations with one scale for all M rows; each row is divided by its
    largest magnitude first and the output rows multiplied back, so every row (a prompt's tokens,
    a batch's questions) gets the whole 8- or 7-bit range, as a per-row scale would."""
    if x.shape[0] == 1:
        return torch.ops.quantized.linear_dynamic(x, packed, reduce_range)
    rows = x.abs().amax(dim=1, keepdim=True).clamp_(min=torch.finfo(x.dtype).tiny)  # M, 1
    return torch.ops.quantized.linear_dynamic(x / rows, packed, reduce_range).mul_(rows)


def fbgemm_fp16(packed: object, x: torch.Tensor) -> torch.Tensor:
    """x (M, K) float32 @ fbgemm's float16 weights, float32 sums."""
    return torch.ops.quantized.linear_dynamic_fp16(x, packed)


def onednn_bf16(packed: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x (M, K) bfloat16 @ oneDNN's prepacked bfloat16 weights (no reorder per call)."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")


@torch.library.custom_op("moonlet::packed_linear", mutates_args=())
def packed_linear(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    """x (M, K) @ the registered weights → (M, out_features), as one op a compiled graph keeps."""
    return _PACKED_CALLS[handle](x)


@packed_linear.register_fake
def _(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    return x.new_empty(x.shape[0], out_features)


def packed_matmul(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    """``packed_linear`` when compiling; the registered call itself in eager mode, where the custom
    op's dispatch costs about 0.1 ms a call (10 ms a decoded token over the decoder's 97 layers)."""
    if torch.compiler.is_compiling():
        return packed_linear(x, handle, out_features)
    return _PACKED_CALLS[handle](x)


def _quantized_tensor(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """A per-channel qint8 tensor for fbgemm's prepack (its creation functions warn of deprecation)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        zeros = torch.zeros(q.shape[0], dtype=torch.long)
        return torch._make_per_channel_quantized_tensor(q, scale.double(), zeros, 0)


# --- fp16 and bf16 ------------------------------------------------------------------------


class HalfLinear(QuantLinear):
    """y = x @ w16.T + b with 16-bit weights (``storage``), packed once for the ``fast`` kernel."""

    storage: torch.dtype
    fast: str

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        kernel: str = "auto",
        dtype: torch.dtype | None = None,
    ):
        super().__init__(weight, bias)
        self.register_buffer("weight16", weight.detach().to(self.storage).contiguous())
        self.handle = None
        self._choose(kernel, dtype or weight.dtype)

    def _auto_kernel(self) -> str:
        return self.fast

    def _supported(self, kernel: str, dtype: torch.dtype) -> bool:
        return kernel == self.fast and self._device.type == "cpu" and self._available()

    def _prepare(self, kernel: str) -> None:
        self.handle = register_packed(self, self._packed_call())

    def _release(self) -> None:
        release_packed(self.handle)
        self.handle = None

    def _drop_source(self) -> None:
        self.weight16 = None

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        return _blocked_matmul(x, self.out_features, lambda a, b: self.weight16[a:b].to(x.dtype))

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == self.fast:
            return packed_matmul(self._activations(x), self.handle, self.out_features)
        return self.reference(x)

    def weight_bytes(self) -> int:
        return 2 * self.in_features * self.out_features

    @staticmethod
    def _available() -> bool:
        raise NotImplementedError

    def _packed_call(self) -> Callable[[torch.Tensor], torch.Tensor]:
        raise NotImplementedError

    def _activations(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Fp16Linear(HalfLinear):
    """float16 weights through fbgemm's GEMM, sums in float32."""

    storage, fast = torch.float16, "fbgemm"
    _available = staticmethod(fbgemm_available)

    def _packed_call(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return functools.partial(fbgemm_fp16, torch.ops.quantized.linear_prepack_fp16(self.weight16.float(), None))

    def _activations(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


class Bf16Linear(HalfLinear):
    """bfloat16 weights reordered once into oneDNN's blocked layout: the products of ``F.linear`` in
    bfloat16 without the reorder ``F.linear`` pays per call, 1.5-3x faster for the few rows of a
    decoded token on a CPU with native bf16 (docs/benchmarks.md)."""

    storage, fast = torch.bfloat16, "onednn"
    _available = staticmethod(onednn_available)

    def _packed_call(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return functools.partial(onednn_bf16, torch.ops.mkldnn._reorder_linear_weight(self.weight16, 1))

    def _activations(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.bfloat16).contiguous()


# --- int8 ---------------------------------------------------------------------------------


def _row_blocks(weight: torch.Tensor):
    """(start, stop, float32 rows) over ``weight`` (N, K), about ``DEQUANT_BLOCK`` elements at a time:
    quantising a large layer (the 51200-row head) never holds float32 copies of all of it."""
    n, k = weight.shape
    step = _rows_per_block(k)
    for start in range(0, n, step):
        stop = min(n, start + step)
        yield start, stop, weight[start:stop].detach().float()


def int8_weights(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) float → int8 q (N, K) and float32 scales (N,) with w ≈ q · s[:, None]."""
    q = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
    scale = torch.empty(weight.shape[0], dtype=torch.float32, device=weight.device)
    for start, stop, w in _row_blocks(weight):
        rows = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)
        q[start:stop] = torch.round(w / rows[:, None]).clamp_(-127, 127)
        scale[start:stop] = rows
    return q, scale


class Int8Linear(QuantLinear):
    """y = (x @ q.T) · s + b, one scale per output channel."""

    mode = "int8"

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        kernel: str = "auto",
        dtype: torch.dtype | None = None,
    ):
        super().__init__(weight, bias)
        q, scale = int8_weights(weight)
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale)  # float32: rounding the scales would add error
        self.handle = None
        self._choose(kernel, dtype or weight.dtype)

    def _supported(self, kernel: str, dtype: torch.dtype) -> bool:
        if kernel == "fbgemm":
            return self._device.type == "cpu" and fbgemm_available()
        # K % 16: the CPU kernel returns garbage or crashes for other widths (torch 2.13)
        return (
            kernel == "pack"
            and hasattr(torch, "_weight_int8pack_mm")
            and dtype in (torch.float32, torch.bfloat16, torch.float16)
            and self.in_features % 16 == 0
        )

    def _prepare(self, kernel: str) -> None:
        if kernel == "fbgemm":
            packed = torch.ops.quantized.linear_prepack(_quantized_tensor(self.qweight, self.scale), None)
            # 7-bit activations where fbgemm's 16-bit sums could saturate (no VNNI)
            self.handle = register_packed(self, functools.partial(fbgemm_int8, packed, not detect_cpu().vnni))

    def _release(self) -> None:
        release_packed(self.handle)
        self.handle = None

    def _drop_source(self) -> None:
        if self.kernel == "fbgemm":  # fbgemm holds its own int8 copy
            self.qweight = None

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        def weight_rows(start: int, stop: int) -> torch.Tensor:
            return self.qweight[start:stop].to(x.dtype)

        return _blocked_matmul(x, self.out_features, weight_rows) * self.scale.to(x.dtype)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == "fbgemm":
            return packed_matmul(x.float(), self.handle, self.out_features)
        if self.kernel == "pack" and x.shape[0] <= INT8_PACK_MAX_ROWS:
            fast = _cpu_activations(x)
            return torch._weight_int8pack_mm(fast, self.qweight, self.scale.to(fast.dtype))
        return self.reference(x)

    def weight_bytes(self) -> int:
        return self.in_features * self.out_features + 4 * self.out_features


# --- int4 ---------------------------------------------------------------------------------


def int4_weights(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, K) float → q (N, K) uint8 in [0, 15], scales and zeros (N, K / group) float32,
    with w ≈ (q − 8) · s + z over each group of ``group_size`` input channels."""
    n, k = weight.shape
    q = torch.empty(n, k, dtype=torch.uint8, device=weight.device)
    scale = torch.empty(n, k // group_size, dtype=torch.float32, device=weight.device)
    zero = torch.empty_like(scale)
    for start, stop, w in _row_blocks(weight):
        w = w.view(stop - start, k // group_size, group_size)  # rows, groups, group
        low, high = w.amin(dim=-1), w.amax(dim=-1)
        rows = ((high - low) / 15).clamp(min=1e-12)
        q[start:stop] = torch.round((w - low[..., None]) / rows[..., None]).clamp_(0, 15).view(stop - start, k)
        scale[start:stop], zero[start:stop] = rows, low + 8 * rows
    return q, scale, zero


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """(N, K) values in [0, 15] → (N, K/2) uint8, even columns in the high nibble."""
    return (q[:, 0::2] << 4) | q[:, 1::2]


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pack_nibbles``."""
    return torch.stack((packed >> 4, packed & 15), dim=-1).reshape(packed.shape[0], -1)


class Int4Linear(QuantLinear):
    """y = x @ ((q − 8) · s + z).T + b with per-group scales s and offsets z."""

    mode = "int4"

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        group_size: int = 128,
        kernel: str = "auto",
        dtype: torch.dtype | None = None,
    ):
        super().__init__(weight, bias)
        if self.in_features % group_size:
            raise ValueError(f"in_features {self.in_features} is not a multiple of the group size {group_size}")
        self.group_size = group_size
        q, scale, zero = int4_weights(weight, group_size)
        self.register_buffer("qweight", pack_nibbles(q))  # (N, K/2) uint8
        dtype = dtype or weight.dtype
        self.register_buffer("scale", scale.to(dtype))
        self.register_buffer("zero", zero.to(dtype))
        self.register_buffer("packed", None)
        self.register_buffer("scale_zero", None)
        self._choose(kernel, dtype)

    def _supported(self, kernel: str, dtype: torch.dtype) -> bool:
        if kernel != "pack":
            return False
        k_tile = 16 * INT4_INNER_K_TILES
        if self._device.type == "cuda":
            return (
                dtype == torch.bfloat16
                and hasattr(torch, "_weight_int4pack_mm")
                and self.out_features % 8 == 0
                and self.in_features % k_tile == 0
            )
        # N % 16: the CPU kernel fails its check for other heights (torch 2.13)
        return (
            self._device.type == "cpu" and hasattr(torch, "_weight_int4pack_mm_for_cpu") and self.out_features % 16 == 0
        )

    def _prepare(self, kernel: str) -> None:
        if self._device.type == "cuda":
            self.packed = torch._convert_weight_to_int4pack(self.qweight, INT4_INNER_K_TILES)
        else:  # in blocks of rows: the kernel's int32 input is 8x the packed bytes (3.4 GB for the head)
            self.packed = torch.empty_like(self.qweight)
            for start in range(0, self.out_features, INT4_PACK_ROWS):
                q = unpack_nibbles(self.qweight[start : start + INT4_PACK_ROWS]).to(torch.int32)
                self.packed[start : start + INT4_PACK_ROWS] = torch._convert_weight_to_int4pack_for_cpu(
                    q, INT4_INNER_K_TILES
                )
        # (K / group, N, 2): [scale, zero] per group and output channel, in the kernel's activation dtype
        scale_zero = torch.stack((self.scale, self.zero), dim=-1).transpose(0, 1).contiguous()
        self.scale_zero = scale_zero.to(torch.bfloat16) if self._device.type == "cpu" else scale_zero

    def _release(self) -> None:
        self.packed = self.scale_zero = None

    def _drop_source(self) -> None:
        self.qweight = self.scale = self.zero = None  # the packed copy and scale_zero replace them

    def _weight_block(self, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        q = unpack_nibbles(self.qweight[start:stop]).to(dtype)
        groups = q.shape[1] // self.group_size
        q = q.view(stop - start, groups, self.group_size)
        scale, zero = self.scale[start:stop, :, None].to(dtype), self.zero[start:stop, :, None].to(dtype)
        return ((q - 8) * scale + zero).view(stop - start, -1)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        return _blocked_matmul(x, self.out_features, lambda a, b: self._weight_block(a, b, x.dtype))

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel != "pack":
            return self.reference(x)
        if x.device.type == "cuda":
            return torch._weight_int4pack_mm(x, self.packed, self.group_size, self.scale_zero.to(x.dtype))
        fast = _cpu_activations(x).contiguous()
        return torch._weight_int4pack_mm_for_cpu(fast, self.packed, self.group_size, self.scale_zero)

    def weight_bytes(self) -> int:
        groups = self.in_features // self.group_size
        scales = self.scale_zero if self.kernel == "pack" else self.scale
        return self.in_features * self.out_features // 2 + 2 * groups * self.out_features * scales.element_size()
