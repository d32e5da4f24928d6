"""Named profiles: the configuration of each supported Moondream revision.

A profile is a complete ``MoondreamConfig`` at real size. Checkpoint ``config.json`` files are
read on top of the matching profile, so an empty ``"config": {}`` means "the profile's defaults".
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from .config import (
    ConfigError,
    GenerationDefaults,
    MoondreamConfig,
    RegionConfig,
    Templates,
    TextConfig,
    TokenizerConfig,
    VisionConfig,
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

# 2024-03-13: "<image>" text around the image, question template with chat history.
LEGACY_2024_TEXT_TEMPLATES = {
    "query": "</image>\n\n{history}Question: {question}\n\nAnswer:",
    "caption_short": "</image>\n\nQuestion: Describe this image in one sentence.\n\nAnswer:",
    "caption_normal": "</image>\n\nQuestion: Describe this image.\n\nAnswer:",
    "caption_long": "</image>\n\nQuestion: Describe this image in detail.\n\nAnswer:",
}

PROFILES: dict[str, MoondreamConfig] = {
    "2025-06-21": MoondreamConfig(
        tokenizer=TokenizerConfig(templates=STARMIE_TEMPLATES, hub_repo="moondream/starmie-v1"),
        profile="2025-06-21",
        dtype="bfloat16",
    ),
    "2024-03-13": MoondreamConfig(
        text=TextConfig(prefix_bidirectional=False),
        vision=VisionConfig(layer_norm_eps=1e-6, gelu="exact", crop_scheme="single", resample="bicubic"),
        region=RegionConfig(enabled=False),
        tokenizer=TokenizerConfig(
            bos_id=50256,
            eos_id=50256,
            query_answer_ids=(),
            masked_after_first=(),
            prompt_style="text",
            text_templates=LEGACY_2024_TEXT_TEMPLATES,
            image_open_text="<image>",
            stop_text="<END>",
            legacy_cleanup=True,
        ),
        generation=GenerationDefaults(max_tokens=512, temperature=0.0, top_p=1.0),
        profile="2024-03-13",
        dtype="float16",
    ),
}

GPT2_TEMPLATES = Templates(
    caption={
        "short": (198, 198, 16438, 8305, 25),  # "\n\nShort caption:"
        "normal": (198, 198, 24334, 1159, 25),  # "\n\nCaption:"
        "long": (198, 198, 14617, 8305, 25),  # "\n\nLong caption:" (from 2025-03-27)
    },
    query_prefix=(198, 198, 24361, 25),  # "\n\nQuestion:"
    query_suffix=(198, 198, 33706, 25),  # "\n\nAnswer:"
    detect_prefix=(198, 198, 47504, 25),  # "\n\nDetect:"
    detect_suffix=(628,),  # "\n\n"
    point_prefix=(198, 198, 12727, 25),  # "\n\nPoint:"
    point_suffix=(628,),
)
_GPT2_TOKENS = dict(bos_id=50256, eos_id=50256, query_answer_ids=(), masked_after_first=())


def _derive(base: str, **changes: Any) -> MoondreamConfig:
    """A profile that differs from ``base`` only in the given sections."""
    return replace(PROFILES[base], **changes)


PROFILES["2024-04-02"] = _derive(  # also 2024-05-08: timm removed, tanh GELU, end id 50256, no <image> text
    "2024-03-13",
    vision=replace(PROFILES["2024-03-13"].vision, layer_norm_eps=1e-5, gelu="tanh"),
    tokenizer=replace(
        PROFILES["2024-03-13"].tokenizer,
        image_open_text="",
        stop_text="",
        text_templates={k: v.replace("</image>", "") for k, v in LEGACY_2024_TEXT_TEMPLATES.items()},
    ),
    profile="2024-04-02",
)
PROFILES["2025-01-09"] = _derive(
    "2025-06-21",
    region=RegionConfig(size_bins="linear"),
    tokenizer=TokenizerConfig(templates=GPT2_TEMPLATES, question_space=False, object_space=False, **_GPT2_TOKENS),
    generation=GenerationDefaults(max_tokens=512, temperature=0.0, top_p=1.0),
    profile="2025-01-09",
    dtype="float16",
)
PROFILES["2025-03-27"] = _derive(
    "2025-01-09",
    region=RegionConfig(size_bins="log"),
    tokenizer=TokenizerConfig(templates=GPT2_TEMPLATES, question_space=True, object_space=True, **_GPT2_TOKENS),
    generation=GenerationDefaults(max_tokens=768, temperature=0.0, top_p=1.0),
    profile="2025-03-27",
)
PROFILES["2025-04-14"] = _derive("2025-03-27", generation=GenerationDefaults(), profile="2025-04-14")

# Ours: the same architecture scaled down for CPU training on generated scenes. Its templates
# come from its own tokenizer (moonlet.train.tokenizer_train) and are stored in its config.json.
PROFILES["moonlet-nano"] = MoondreamConfig(
    text=TextConfig(dim=192, ff_dim=768, n_layers=4, n_heads=3, n_kv_heads=3, vocab_size=2048, max_context=512),
    vision=VisionConfig(
        enc_dim=128, enc_n_layers=4, enc_ff_dim=512, enc_n_heads=2, proj_out_dim=192, proj_inner_dim=512,
        crop_size=140, crop_scheme="single",
    ),
    region=RegionConfig(dim=192, inner_dim=512),
    tokenizer=TokenizerConfig(),
    generation=GenerationDefaults(max_tokens=128, temperature=0.0, top_p=1.0),
    profile="moonlet-nano",
    dtype="float16",
)

PROFILES["2024-05-20"] = _derive(  # also 07-23 and 08-26: global view + up to 2×2 whole tiles
    "2024-04-02",
    vision=replace(PROFILES["2024-04-02"].vision, crop_scheme="grid"),
    profile="2024-05-20",
)

# Hub revisions that share a profile.
REVISION_PROFILES = {name: name for name in PROFILES} | {
    "2024-05-08": "2024-04-02",
    "2024-07-23": "2024-05-20",
    "2024-08-26": "2024-05-20",
}


def profile_for_revision(revision: str | None) -> str | None:
    return REVISION_PROFILES.get(revision) if revision else None


# Phi defaults of the 2024 release's PhiConfig, for keys its config.json leaves out.
PHI_KEYS = {
    "hidden_size": "dim",
    "intermediate_size": "ff_dim",
    "num_hidden_layers": "n_layers",
    "num_attention_heads": "n_heads",
    "num_key_value_heads": "n_kv_heads",
    "vocab_size": "vocab_size",
    "max_position_embeddings": "max_context",
    "layer_norm_eps": "layer_norm_eps",
    "rope_theta": "rope_theta",
    "partial_rotary_factor": "partial_rotary_factor",
}
PHI_IGNORED = {"model_type", "rope_scaling", "qk_layernorm", "hidden_act", "torch_dtype", "transformers_version"}
# The golden-only vision_config section (real 2024 configs have none: the tower is hard-coded).
VISION_KEYS = {
    "crop_size": "crop_size",
    "depth": "enc_n_layers",
    "embed_dim": "enc_dim",
    "layer_norm_eps": "layer_norm_eps",
    "num_heads": "enc_n_heads",
    "patch_size": "enc_patch_size",
    "proj_hidden_dim": "proj_inner_dim",
    "proj_out_dim": "proj_out_dim",
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
        return config_from_legacy(data, profile or "2024-03-13")
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


def config_from_legacy(data: Mapping[str, Any], profile: str) -> MoondreamConfig:
    """The 2024 form: ``phi_config`` (or ``text_config``) holding only non-default Phi keys."""
    base = get_profile(profile)
    phi = dict(data.get("phi_config") or data.get("text_config") or {})
    if phi.get("model_type", "phi") != "phi":
        raise ConfigError(f"phi_config.model_type is {phi.get('model_type')!r}, expected 'phi'")
    if phi.get("rope_scaling") or phi.get("qk_layernorm"):
        raise ConfigError("phi_config: rope_scaling and qk_layernorm are not used by any Moondream release")
    if phi.get("hidden_act", "gelu_new") != "gelu_new":
        raise ConfigError(f"phi_config.hidden_act {phi['hidden_act']!r} is not the Phi-1.5 'gelu_new'")
    unknown = set(phi) - set(PHI_KEYS) - PHI_IGNORED
    if unknown:
        raise ConfigError(f"unknown keys in phi_config: {sorted(unknown)}")
    text = {PHI_KEYS[k]: v for k, v in phi.items() if k in PHI_KEYS}
    if "num_key_value_heads" not in phi or phi["num_key_value_heads"] is None:
        text["n_kv_heads"] = text.get("n_heads", base.text.n_heads)
    vision_section = dict(data.get("vision_config") or {})
    vision = {VISION_KEYS[k]: v for k, v in vision_section.items() if k in VISION_KEYS}
    if "mlp_ratio" in vision_section:  # timm: hidden = int(width * ratio)
        vision["enc_ff_dim"] = int(vision.get("enc_dim", base.vision.enc_dim) * vision_section["mlp_ratio"])
    if "n_patches" in vision_section:
        crop = vision.get("crop_size", base.vision.crop_size) // vision.get("enc_patch_size", base.vision.enc_patch_size)
        if vision_section["n_patches"] != crop * crop:
            raise ConfigError(f"vision_config.n_patches {vision_section['n_patches']} does not match the crop geometry")
    config = config_from_reference_dict({"text": text, "vision": vision}, base)
    dtype = data.get("torch_dtype") or base.dtype
    return replace(config, dtype=dtype)
