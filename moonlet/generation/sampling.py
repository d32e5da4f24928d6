"""Next-token selection: greedy, temperature and nucleus (top-p) sampling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..config import GenerationDefaults


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class SamplingSettings:
    max_tokens: int = 768
    temperature: float = 0.5
    top_p: float = 0.3
    seed: int | None = None

    def validate(self) -> SamplingSettings:
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise SettingsError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if not _is_number(self.temperature) or not 0.0 <= self.temperature <= 100.0:
            raise SettingsError(f"temperature must be a number between 0 and 100, got {self.temperature!r}")
        if not _is_number(self.top_p) or not 0.0 < self.top_p <= 1.0:
            raise SettingsError(f"top_p must be a number in (0, 1], got {self.top_p!r}")
        if self.seed is not None and not _is_int(self.seed):
            raise SettingsError(f"seed must be an integer, got {self.seed!r}")
        return self

    @classmethod
    def from_settings(cls, defaults: GenerationDefaults, settings: Mapping[str, Any] | None) -> SamplingSettings:
        """Profile defaults overridden by a user's settings dict (the official client's keys)."""
        base = cls(defaults.max_tokens, defaults.temperature, defaults.top_p)
        if not settings:
            return base.validate()
        known = {"max_tokens", "temperature", "top_p", "seed", "max_objects", "variant", "json_schema"}
        unknown = set(settings) - known
        if unknown:
            raise SettingsError(f"unknown settings {sorted(unknown)}; known: {sorted(known)}")
        values = {k: settings[k] for k in ("max_tokens", "temperature", "top_p", "seed") if k in settings}
        return replace(base, **values).validate()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def select_next(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """logits (B, V) → ids (B,). Temperature 0 is argmax.

    Top-p keeps the tokens whose cumulative probability *before* them is at most ``top_p``
    (so the most likely token is always kept), renormalises and draws one sample.
    """
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before > top_p, 0.0)
    sorted_probs = sorted_probs / sorted_probs.sum(-1, keepdim=True)
    choice = torch.multinomial(sorted_probs, 1, generator=generator)
    return order.gather(-1, choice)[:, 0]
