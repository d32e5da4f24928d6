"""Variants by name: registered local adapters, adapter files named directly, and hosted ids.

A hosted id is fetched from Moondream's API only when network use is allowed
(``allow_network=True`` at load time): ``{MOONDREAM_ENDPOINT}/v1/variants/{id}/download`` with the
``X-Moondream-Auth`` header from ``MOONDREAM_API_KEY``, saved under the Hugging Face hub cache as
``md_variants/{id}/final.pt`` and converted there to ``final.safetensors`` on first use.
"""

from __future__ import annotations

import os
import re
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import torch

from ..config import TextConfig
from ..modeling.lora import TextAdapter
from .files import VariantError, convert_pt, read_adapter

DEFAULT_ENDPOINT = "https://api.moondream.ai"
HOSTED_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ADAPTER_SUFFIXES = (".safetensors", ".pt")


def hub_cache() -> Path:
    """The Hugging Face hub cache: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def hosted_dir(variant_id: str) -> Path:
    return hub_cache() / "md_variants" / variant_id


def download_hosted(variant_id: str, timeout_s: float = 120.0) -> Path:
    """Fetch a hosted variant's ``final.pt`` into the cache; returns its path."""
    endpoint = os.environ.get("MOONDREAM_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")
    request = urllib.request.Request(f"{endpoint}/v1/variants/{variant_id}/download")
    key = os.environ.get("MOONDREAM_API_KEY")
    if key:
        request.add_header("X-Moondream-Auth", key)
    target = hosted_dir(variant_id) / "final.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".pt.partial")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response, partial.open("wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        raise VariantError(f"variant {variant_id!r}: download from {endpoint} failed ({exc})") from None
    partial.replace(target)
    return target


class VariantRegistry:
    """Resolves ``settings["variant"]`` to a ``TextAdapter`` on the model's device and dtype."""

    def __init__(
        self,
        config: TextConfig,
        device: torch.device,
        dtype: torch.dtype,
        variants: Mapping[str, str | os.PathLike] | str | os.PathLike | None = None,
        allow_network: bool = False,
    ):
        self.config = config
        self.device = device
        self.dtype = dtype
        self.allow_network = allow_network
        self.paths: dict[str, Path] = {}
        self.loaded: dict[str, TextAdapter] = {}
        if isinstance(variants, (str, os.PathLike)):
            self.register_directory(Path(variants))
        else:
            for name, path in (variants or {}).items():
                self.register(name, path)

    def register(self, name: str, path: str | os.PathLike) -> None:
        """Make ``name`` mean the adapter at ``path`` (read now, so a bad file fails at once)."""
        if not isinstance(name, str) or not name:
            raise VariantError(f"a variant name must be a non-empty string, got {name!r}")
        self.paths[name] = Path(path)
        self.loaded.pop(name, None)
        self.get(name)

    def register_directory(self, directory: Path) -> None:
        """Every ``.safetensors`` / ``.pt`` file in ``directory``, by its stem."""
        if not directory.is_dir():
            raise VariantError(f"variants directory not found: {directory}")
        files = sorted(p for p in directory.iterdir() if p.suffix in ADAPTER_SUFFIXES)
        if not files:
            raise VariantError(f"{directory}: no .safetensors or .pt adapters in it")
        for path in files:
            self.register(path.stem, path)

    @property
    def names(self) -> list[str]:
        return sorted(self.paths)

    def adapter(self, settings: Mapping | None) -> TextAdapter | None:
        """The variant a settings dict asks for (None without one)."""
        if not settings or settings.get("variant") is None:
            return None
        return self.get(settings["variant"])

    def get(self, name: object) -> TextAdapter:
        if not isinstance(name, str) or not name:
            raise VariantError(f"variant must be a non-empty string, got {name!r}")
        if name not in self.loaded:
            adapter = read_adapter(self._locate(name), name, self.config)
            self.loaded[name] = adapter.to(self.device, self.dtype)
        return self.loaded[name]

    def _locate(self, name: str) -> Path:
        if name in self.paths:
            return self.paths[name]
        if name.endswith(ADAPTER_SUFFIXES) and Path(name).is_file():
            return Path(name)
        known = f"registered: {', '.join(self.names)}" if self.paths else "none are registered"
        if not HOSTED_ID.fullmatch(name):
            raise VariantError(f"unknown variant {name!r} ({known}; not an adapter file either)")
        cached = hosted_dir(name)
        if (cached / "final.safetensors").is_file():
            return cached / "final.safetensors"
        if not (cached / "final.pt").is_file():
            if not self.allow_network:
                raise VariantError(
                    f"unknown variant {name!r} ({known}); a hosted variant is downloaded only when network use is "
                    "allowed (moonlet.load(..., allow_network=True), or --allow-network)"
                )
            download_hosted(name)
        return convert_pt(cached / "final.pt", cached / "final.safetensors")
