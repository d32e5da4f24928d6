"""Low-rank adapters on the text decoder's linear layers: train, save, merge."""

from __future__ import annotations

import math

import torch
from torch import nn

LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


class LoRALinear(nn.Module):
    """y = base(x) + (x Aᵀ) Bᵀ · alpha / r, with the base layer frozen and B starting at zero."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(
            torch.empty(rank, base.in_features, device=base.weight.device, dtype=base.weight.dtype)
        )
        self.lora_b = nn.Parameter(
            torch.zeros(base.out_features, rank, device=base.weight.device, dtype=base.weight.dtype)
        )
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    def merged(self) -> nn.Linear:
        with torch.no_grad():
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
        return self.base


def add_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0, prefix: str = "text.blocks") -> list[str]:
    """Wrap every target linear under ``prefix``; freezes everything else. Returns wrapped names."""
    model.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        if name.startswith(prefix) and name.endswith(LORA_TARGETS) and isinstance(module, nn.Linear):
            parent_name, child = name.rsplit(".", 1)
            setattr(model.get_submodule(parent_name), child, LoRALinear(module, rank, alpha))
            wrapped.append(name)
    if not wrapped:
        raise ValueError(f"no linear layers to adapt under {prefix}")
    return wrapped


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and remove the wrappers (in place)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, child = name.rsplit(".", 1)
            setattr(model.get_submodule(parent_name), child, module.merged())
    return model


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in model.named_parameters() if ".lora_" in name}
