"""Named profiles: the configuration of each supported Moondream revision.

A profile is a complete ``MoondreamConfig`` at real size. Checkpoint ``config.json`` files are
read on top of the matching profile, so an empty ``"config": {}`` means "the profile's defaults".
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from .config import (
    ConfigError,
    MoondreamConfig,
    Templates,
    TokenizerConfig,
    config_from_reference_dict,
)

DEFAULT_PROFILE = "2025-06-21"

STARMIE_TEMPLATES = Templates(
    caption={
        "short": (1, 32708, 2, 12492, 3),
        "normal": (1, 32708, 2, 6382, 3),
        "long": (1, 32708, 2, 4059, 3),
    },
    query_prefix=(1, 15381, 2),
    query_suffix=(3,),
    detect_prefix=(1, 7235, 476, 2),
    detect_suffix=(3,),
    point_prefix=(1, 2581, 2),
    point_suffix=(3,),
)

PROFILES: dict[str, MoondreamConfig] = {
    "2025-06-21": MoondreamConfig(
        tokenizer=TokenizerConfig(templates=STARMIE_TEMPLATES, hub_repo="moondream/starmie-v1"),
        profile="2025-06-21",
        dtype="bfloat16",
    ),
}


def get_profile(name: str | None) -> MoondreamConfig:
    name = name or DEFAULT_PROFILE
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; known profiles: {', '.join(sorted(PROFILES))}") from None


def config_from_json(data: Mapping[str, Any], profile: str | None = None) -> MoondreamConfig:
    """Read a checkpoint's config in any of the forms we know.

    - Hugging Face form (2025 releases): ``{"model_type": "moondream1", "config": {...}}``; the
      inner dict may be empty, meaning the profile defaults.
    - The reference's own form: top-level sections ``text``, ``vision``, ``region``, ``tokenizer``.
    - Our own saved form: the reference form plus ``profile`` and ``dtype``.
    """
    if "phi_config" in data or "text_config" in data:
        raise ConfigError(
            "this config.json is a 2024 revision (phi_config section); that profile is not "
            "supported by this version of moonlet yet"
        )
    if "config" in data:
        inner = data["config"] or {}
        if not isinstance(inner, Mapping):
            raise ConfigError("config.json: the 'config' key must hold an object")
        base = get_profile(profile or inner.get("profile"))
        dtype = data.get("torch_dtype") or base.dtype
        config = config_from_reference_dict(inner, base)
        return config if "dtype" in inner else replace(config, dtype=dtype)
    if any(key in data for key in ("text", "vision", "region", "tokenizer")):
        return config_from_reference_dict(data, get_profile(profile or data.get("profile")))
    raise ConfigError(
        "config.json is in no known form: expected a 'config' section (Hugging Face release) "
        "or 'text'/'vision' sections (reference form)"
    )
