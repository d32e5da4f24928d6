"""Which dtype and matmul kernel each part uses, chosen from the CPU the model runs on.

``detect_cpu()`` reads what the processor can do (PyTorch's capability level, native bf16, VNNI,
AMX, the architecture); ``plan_for(cpu, device)`` turns it into a ``KernelPlan``: the model's dtype,
the text decoder's unquantised linear kernel, and the int8 / int4 kernels, each with the reason
for the choice. The table follows the measurements in docs/benchmarks.md; an explicit ``dtype=``
or kernel wins over it. Tests force a capability with ``CpuKind(...)``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch


@dataclass(frozen=True)
class CpuKind:
    """What the CPU offers. ``capability``: ``torch.backends.cpu.get_cpu_capability()``."""

    arch: str  # "x86_64", "aarch64", …
    capability: str  # "AVX2", "AVX512", "DEFAULT", "SVE256", …
    bf16: bool = False  # native bfloat16 arithmetic (AVX512-BF16, AMX, or ARM's BF16 extension)
    vnni: bool = False  # int8 dot products (AVX512-VNNI / AVX-VNNI)
    amx: bool = False

    @property
    def x86(self) -> bool:
        return self.arch in ("x86_64", "AMD64", "i686")

    @property
    def arm(self) -> bool:
        return self.arch in ("aarch64", "arm64")

    def describe(self) -> str:
        extras = [name for name in ("bf16", "vnni", "amx") if getattr(self, name)]
        return f"{self.arch} {self.capability}" + (f" +{'+'.join(extras)}" if extras else "")


def _arm_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("Features") for flag in line.split(":")[1].split()}


@cache
def detect_cpu() -> CpuKind:
    """The CPU this process runs on (read once: every quantised layer asks)."""
    arch = platform.machine()
    capability = torch.backends.cpu.get_cpu_capability()
    probe = getattr(torch, "cpu", None)

    def has(name: str) -> bool:
        check = getattr(probe, name, None)
        return bool(check()) if callable(check) else False

    if arch in ("aarch64", "arm64"):
        return CpuKind(arch, capability, bf16="bf16" in _arm_flags())
    amx = has("_is_amx_tile_supported")
    return CpuKind(
        arch, capability, bf16=has("_is_avx512_bf16_supported") or amx, vnni=has("_is_vnni_supported"), amx=amx
    )


@dataclass(frozen=True)
class Choice:
    value: str
    reason: str


@dataclass(frozen=True)
class KernelPlan:
    """Per-part choices for one device. ``dtype``: parameters and activations; ``dense``: the text
    decoder's unquantised linear layers (``"dense"``, ``"fp16"``: float16 weights through fbgemm, or
    ``"bf16"``: bfloat16 weights prepacked for oneDNN);
    ``int8`` / ``int4``: the quantised layers' kernels."""

    cpu: str
    dtype: Choice
    dense: Choice
    int8: Choice
    int4: Choice

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype.value)

    def as_dict(self) -> dict:
        parts = {name: getattr(self, name) for name in ("dtype", "dense", "int8", "int4")}
        return {"cpu": self.cpu, **{k: {"choice": c.value, "why": c.reason} for k, c in parts.items()}}

    def describe(self) -> str:
        lines = [f"cpu: {self.cpu}"]
        for name in ("dtype", "dense", "int8", "int4"):
            choice = getattr(self, name)
            lines.append(f"{name}: {choice.value} ({choice.reason})")
        return "\n".join(lines)


def fbgemm_available() -> bool:
    """Whether PyTorch's x86 quantized engine (fbgemm) is built in."""
    return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(torch.ops.quantized, "linear_dynamic")


def onednn_available() -> bool:
    """Whether PyTorch's oneDNN linear with prepacked weights (what inductor uses on CPU) is built in."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def plan_for(cpu: CpuKind | None = None, device: torch.device | str = "cpu") -> KernelPlan:
    """The fastest measured choice per part on ``cpu`` (default: this one) for ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        why = "GPU: bfloat16 tensor cores"
        return KernelPlan(
            "cuda",
            Choice("bfloat16", why),
            Choice("dense", why),
            Choice("pack", "torch's packed int8 kernel"),
            Choice("pack", "tinygemm int4 kernel (bf16)"),
        )
    cpu = cpu or detect_cpu()
    if cpu.bf16:
        dtype = Choice("bfloat16", "native bf16 matmuls: about 2x float32 and half the bytes")
    else:
        dtype = Choice("float32", "no native bf16: bf16 matmuls run about 10x slower than float32 here")
    fbgemm = cpu.x86 and fbgemm_available()
    if fbgemm and dtype.value == "float32":
        dense = Choice("fp16", "float16 weights through fbgemm: half the bytes per decoded token, float32 sums")
    elif cpu.x86 and dtype.value == "bfloat16" and onednn_available():
        dense = Choice("bf16", "bfloat16 weights reordered once for oneDNN: decode 1.5x plain bf16, prefill 1.2x")
    else:
        dense = Choice("dense", "plain matmuls in the model's dtype")
    if fbgemm:  # faster than the packed kernel with bf16 activations on AVX2 and AVX-512-BF16 alike
        bits = "8-bit activations (VNNI sums)" if cpu.vnni else "7-bit activations (no VNNI: 16-bit sums)"
        int8 = Choice("fbgemm", f"int8 activations x int8 weights (fbgemm dynamic quantisation, {bits})")
    else:
        int8 = Choice("pack", "torch's packed int8 weights with bf16 activations")
    int4 = Choice("pack", "torch's packed int4 weights with bf16 activations (float32 ones are 15x slower)")
    return KernelPlan(cpu.describe(), dtype, dense, int8, int4)
