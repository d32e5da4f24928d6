"""The quantised layers: ``nn.Linear`` replacements holding int8 or int4 weights.

- ``int8``: one symmetric scale per output channel, ``w ≈ q · s`` with q in [-127, 127].
- ``int4``: asymmetric groups of ``group_size`` input channels, ``w ≈ (q − 8) · s + z`` with
  q in [0, 15] (the convention of PyTorch's tinygemm int4 kernels).

Activations stay in the model's dtype. Each layer picks a kernel when it is built, on the
device its weight lives on, and checks it once against the plain dequantised reference:

- int8 ``pack``: ``torch._weight_int8pack_mm``; ``dequant``: convert blocks of rows back to
  the activation dtype and multiply.
- int4 ``pack``: ``torch._weight_int4pack_mm_for_cpu`` on CPU, ``torch._weight_int4pack_mm``
  on CUDA (bf16 only); ``dequant``: unpack nibbles in blocks of rows and multiply.

``auto`` follows the CPU measurements in docs/benchmarks.md: the packed kernels for bf16/fp16
activations (int8 only up to ``INT8_PACK_MAX_ROWS`` rows, then dequant), dequant for float32,
where the packed kernels are several times slower than even the dense matmul.

A ``pack`` layer cannot move to another device once built: quantise a model on its final device
(``moonlet.quant.quantize_``).
"""

from __future__ import annotations

import torch
from torch import nn

KERNELS = ("auto", "pack", "dequant")
DEQUANT_BLOCK = 1 << 20  # weight elements converted at a time by the dequant kernels
INT8_PACK_MAX_ROWS = 8  # above this many activation rows the dequant kernel is faster (docs/benchmarks.md)
INT4_INNER_K_TILES = 8
CHECK_TOLERANCE = 2e-2  # relative difference a packed kernel may show against the reference


def _kernel_ok(reference: torch.Tensor, candidate: torch.Tensor) -> bool:
    scale = reference.float().abs().max().clamp(min=1e-6)
    return bool(((candidate.float() - reference.float()).abs().max() / scale) < CHECK_TOLERANCE)


def _blocked_matmul(x: torch.Tensor, rows: int, weight_block) -> torch.Tensor:
    """x (M, K) @ W.T, W built ``block`` output rows at a time by ``weight_block(start, stop)``."""
    out = x.new_empty(x.shape[0], rows)
    step = max(1, DEQUANT_BLOCK // max(1, x.shape[1]))
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        torch.matmul(x, weight_block(start, stop).t(), out=out[:, start:stop])
    return out


class QuantLinear(nn.Module):
    """Common part: shapes, bias, flattening of leading dimensions, kernel choice."""

    kernel: str

    def __init__(self, in_features: int, out_features: int, bias: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = self.matmul(flat)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _choose(self, kernel: str, dtype: torch.dtype) -> None:
        """Use ``pack`` if asked for (or ``auto``) and it runs and agrees with the reference."""
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; use one of {KERNELS}")
        self.kernel = "dequant"
        if kernel == "pack" and not self._pack_supported(dtype):
            raise RuntimeError(f"no packed {type(self).__name__} kernel for {dtype} on this device")
        if kernel == "dequant" or (kernel == "auto" and not self._pack_preferred(dtype)):
            return
        probe = torch.randn(3, self.in_features, generator=torch.Generator().manual_seed(0)).to(self._device, dtype)
        try:
            self._pack()
            self.kernel = "pack"
            ok = _kernel_ok(self.reference(probe), self.matmul(probe))
        except (RuntimeError, NotImplementedError):
            ok = False
        if not ok:
            self.kernel = "dequant"
            self._unpack()
            if kernel == "pack":
                raise RuntimeError(f"the packed {type(self).__name__} kernel failed its check for {dtype}")

    @property
    def _device(self) -> torch.device:
        raise NotImplementedError

    def _pack_supported(self, dtype: torch.dtype) -> bool:
        return False

    def _pack_preferred(self, dtype: torch.dtype) -> bool:
        return self._pack_supported(dtype) and dtype in (torch.bfloat16, torch.float16)

    def _pack(self) -> None:
        pass

    def _unpack(self) -> None:
        pass

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.kernel}"


# --- int8 ---------------------------------------------------------------------------------


def int8_weights(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) float → int8 q (N, K) and float32 scales (N,) with w ≈ q · s[:, None]."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


class Int8Linear(QuantLinear):
    """y = (x @ q.T) · s + b, one scale per output channel."""

    def __init__(self, linear: nn.Linear, kernel: str = "auto"):
        super().__init__(linear.in_features, linear.out_features, linear.bias)
        q, scale = int8_weights(linear.weight)
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale)  # float32: rounding the scales would add error
        self._choose(kernel, linear.weight.dtype)

    @property
    def _device(self) -> torch.device:
        return self.qweight.device

    def _pack_supported(self, dtype: torch.dtype) -> bool:
        # K % 16: the CPU kernel returns garbage or crashes for other widths (torch 2.13)
        return (
            hasattr(torch, "_weight_int8pack_mm")
            and dtype in (torch.float32, torch.bfloat16, torch.float16)
            and self.in_features % 16 == 0
        )

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        def weight_rows(start: int, stop: int) -> torch.Tensor:
            return self.qweight[start:stop].to(x.dtype)

        return _blocked_matmul(x, self.out_features, weight_rows) * self.scale.to(x.dtype)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == "pack" and x.shape[0] <= INT8_PACK_MAX_ROWS:
            return torch._weight_int8pack_mm(x, self.qweight, self.scale.to(x.dtype))
        return self.reference(x)


# --- int4 ---------------------------------------------------------------------------------


def int4_weights(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, K) float → q (N, K) uint8 in [0, 15], scales and zeros (N, K / group) float32,
    with w ≈ (q − 8) · s + z over each group of ``group_size`` input channels."""
    n, k = weight.shape
    w = weight.detach().float().reshape(n, k // group_size, group_size)
    low, high = w.amin(dim=-1), w.amax(dim=-1)
    scale = ((high - low) / 15).clamp(min=1e-12)
    q = torch.round((w - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8)
    return q.reshape(n, k), scale, low + 8 * scale


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """(N, K) values in [0, 15] → (N, K/2) uint8, even columns in the high nibble."""
    return (q[:, 0::2] << 4) | q[:, 1::2]


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pack_nibbles``."""
    return torch.stack((packed >> 4, packed & 15), dim=-1).reshape(packed.shape[0], -1)


class Int4Linear(QuantLinear):
    """y = x @ ((q − 8) · s + z).T + b with per-group scales s and offsets z."""

    def __init__(self, linear: nn.Linear, group_size: int = 128, kernel: str = "auto"):
        super().__init__(linear.in_features, linear.out_features, linear.bias)
        if linear.in_features % group_size:
            raise ValueError(f"in_features {linear.in_features} is not a multiple of the group size {group_size}")
        self.group_size = group_size
        q, scale, zero = int4_weights(linear.weight, group_size)
        self.register_buffer("qweight", pack_nibbles(q))  # (N, K/2) uint8
        dtype = linear.weight.dtype
        self.register_buffer("scale", scale.to(dtype))
        self.register_buffer("zero", zero.to(dtype))
        self.register_buffer("packed", None)
        self.register_buffer("scale_zero", None)
        self._choose(kernel, dtype)

    @property
    def _device(self) -> torch.device:
        return self.scale.device

    def _pack_supported(self, dtype: torch.dtype) -> bool:
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

    def _pack(self) -> None:
        if self._device.type == "cuda":
            self.packed = torch._convert_weight_to_int4pack(self.qweight, INT4_INNER_K_TILES)
        else:
            q = unpack_nibbles(self.qweight).to(torch.int32)
            self.packed = torch._convert_weight_to_int4pack_for_cpu(q, INT4_INNER_K_TILES)
        # (K / group, N, 2): [scale, zero] per group and output channel
        self.scale_zero = torch.stack((self.scale, self.zero), dim=-1).transpose(0, 1).contiguous()

    def _unpack(self) -> None:
        self.packed = self.scale_zero = None

    def _choose(self, kernel: str, dtype: torch.dtype) -> None:
        super()._choose(kernel, dtype)
        if self.kernel == "pack":  # the packed copy replaces the nibbles: keep one copy only
            self.qweight = None

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
        sz = self.scale_zero.to(x.dtype)
        if x.device.type == "cuda":
            return torch._weight_int4pack_mm(x, self.packed, self.group_size, sz)
        return torch._weight_int4pack_mm_for_cpu(x.contiguous(), self.packed, self.group_size, sz)
