"""LoRA variants: adapters read from files, registered by name, or downloaded from Moondream's API."""

from .files import VariantError, convert_pt, read_adapter
from .registry import VariantRegistry

__all__ = ["VariantError", "VariantRegistry", "convert_pt", "read_adapter"]
