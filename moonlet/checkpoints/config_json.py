"""``config.json``, read and written; and the mapping between transformers' Phi/SigLIP configs and ours.

``config_from_json`` reads the three forms checkpoints come in, on top of the matching profile:

- Hugging Face (2025 releases): ``{"model_type": "moondream1", "config": {...}}``; an empty inner
  dict means the profile's defaults.
- The reference's own: top-level sections ``text``, ``vision``, ``region``, ``tokenizer`` (ours
  adds ``profile`` and ``dtype``); ``config_to_dict`` writes it.
- 2024 releases: ``phi_config`` (or ``text_config``) holding only the ``PhiConfig`` keys that
  differ from its defaults.

One table per transformers config (``PHI_TEXT_FIELDS``, ``SIGLIP_VISION_FIELDS``) drives both
directions: ``phi_kwargs`` / ``siglip_kwargs`` (ours → constructor arguments) and
``text_config_from_phi`` / ``vision_config_from_siglip`` (theirs → ours); the 2024 ``phi_config``
form is read through the same Phi table. transformers itself is never imported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..config import ConfigError, MoondreamConfig, Templates, TextConfig, VisionConfig
from ..profiles import get_profile

# (transformers name, our name). Transformers 5.x keeps the two RoPE values under ``rope_parameters``.
PHI_TEXT_FIELDS = (
    ("hidden_size", "dim"),
    ("intermediate_size", "ff_dim"),
    ("num_hidden_layers", "n_layers"),
    ("num_attention_heads", "n_heads"),
    ("num_key_value_heads", "n_kv_heads"),
    ("vocab_size", "vocab_size"),
    ("max_position_embeddings", "max_context"),
    ("layer_norm_eps", "layer_norm_eps"),
    ("rope_theta", "rope_theta"),
    ("partial_rotary_factor", "partial_rotary_factor"),
)
SIGLIP_VISION_FIELDS = (
    ("hidden_size", "enc_dim"),
    ("intermediate_size", "enc_ff_dim"),
    ("num_hidden_layers", "enc_n_layers"),
    ("num_attention_heads", "enc_n_heads"),
    ("image_size", "crop_size"),
    ("patch_size", "enc_patch_size"),
    ("num_channels", "in_channels"),
    ("layer_norm_eps", "layer_norm_eps"),
)
# Our ``gelu`` setting -> each model's activation name, and every transformers name -> ours
# (``gelu_new`` and ``gelu_pytorch_tanh`` are both the tanh approximation; ``gelu`` is the erf form).
PHI_ACTIVATION = {"tanh": "gelu_new", "exact": "gelu"}
SIGLIP_ACTIVATION = {"tanh": "gelu_pytorch_tanh", "exact": "gelu"}
HF_GELU = {"gelu": "exact", "gelu_pytorch_tanh": "tanh", "gelu_new": "tanh"}

# 2024 ``phi_config`` keys that are checked rather than stored, or only informational.
PHI_CHECKED_KEYS = {"model_type", "rope_scaling", "qk_layernorm", "hidden_act", "torch_dtype", "transformers_version"}
# The golden-only 2024 ``vision_config`` section (timm names; real 2024 configs have none: the tower is hard-coded).
TIMM_VISION_FIELDS = (
    ("crop_size", "crop_size"),
    ("depth", "enc_n_layers"),
    ("embed_dim", "enc_dim"),
    ("layer_norm_eps", "layer_norm_eps"),
    ("num_heads", "enc_n_heads"),
    ("patch_size", "enc_patch_size"),
    ("proj_hidden_dim", "proj_inner_dim"),
    ("proj_out_dim", "proj_out_dim"),
)
TIMM_CHECKED_KEYS = {"mlp_ratio", "n_patches", "timm_model"}
REFERENCE_SECTIONS = ("text", "vision", "region", "tokenizer")
TEMPLATE_SKILLS = ("query", "detect", "point")  # each with a prefix and a suffix


# --- the transformers mapping ---------------------------------------------------------------


def gelu_kind(hidden_act: str) -> str:
    """Our ``gelu`` setting for a transformers activation name."""
    if hidden_act not in HF_GELU:
        raise ConfigError(f"activation {hidden_act!r} has no equivalent here (supported: {sorted(HF_GELU)})")
    return HF_GELU[hidden_act]


def _theirs(table, section) -> dict[str, Any]:
    return {theirs: getattr(section, ours) for theirs, ours in table}


def _ours(table, values: Mapping[str, Any]) -> dict[str, Any]:
    """Our fields for the transformers keys that ``values`` sets (None counts as unset)."""
    return {ours: values[theirs] for theirs, ours in table if values.get(theirs) is not None}


def _read(table, hf_config: Any, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """Our fields from a transformers config object; every key of ``table`` but ``optional`` is required."""
    values = {theirs: getattr(hf_config, theirs, None) for theirs, _ in table}
    missing = [key for key, value in values.items() if value is None and key not in optional]
    if missing:
        raise ConfigError(f"{type(hf_config).__name__} lacks {missing}")
    return _ours(table, values)


def phi_kwargs(text: TextConfig) -> dict[str, Any]:
    """``PhiConfig`` arguments with our decoder's dimensions (Phi is fully causal)."""
    return _theirs(PHI_TEXT_FIELDS, text) | {"hidden_act": PHI_ACTIVATION[text.gelu]}


def siglip_kwargs(vision: VisionConfig) -> dict[str, Any]:
    """``SiglipVisionConfig`` arguments with our vision trunk's dimensions."""
    return _theirs(SIGLIP_VISION_FIELDS, vision) | {"hidden_act": SIGLIP_ACTIVATION[vision.gelu]}


def phi_rope(hf_config: Any) -> tuple[float, float]:
    """(rope_theta, partial_rotary_factor) from a 4.x or 5.x ``PhiConfig``; plain RoPE only."""
    params = getattr(hf_config, "rope_parameters", None)
    if params:
        rope_type = params.get("rope_type", "default")
        theta, factor = params["rope_theta"], params.get("partial_rotary_factor", 1.0)
    else:
        scaling = getattr(hf_config, "rope_scaling", None)
        rope_type = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
        theta, factor = hf_config.rope_theta, hf_config.partial_rotary_factor
    if rope_type != "default":
        raise ConfigError(f"rope type {rope_type!r} is not supported (plain RoPE only)")
    return float(theta), float(factor)


def text_config_from_phi(hf_config: Any, **overrides: Any) -> TextConfig:
    """A TextConfig matching a ``PhiConfig``. HF Phi is fully causal, so the image prefix is not
    bidirectional unless ``overrides`` says otherwise."""
    if getattr(hf_config, "qk_layernorm", False):
        raise ConfigError("Phi with qk_layernorm has no equivalent here")
    head_dim = hf_config.hidden_size // hf_config.num_attention_heads
    if getattr(hf_config, "head_dim", None) not in (None, head_dim):
        raise ConfigError(f"Phi head_dim {hf_config.head_dim} differs from hidden_size / heads = {head_dim}")
    ours = _read(PHI_TEXT_FIELDS, hf_config, optional=("num_key_value_heads", "rope_theta", "partial_rotary_factor"))
    ours.setdefault("n_kv_heads", ours["n_heads"])
    ours["rope_theta"], ours["partial_rotary_factor"] = phi_rope(hf_config)
    ours.update(gelu=gelu_kind(hf_config.hidden_act), prefix_bidirectional=False)
    return replace(TextConfig(), **(ours | overrides))


def vision_config_from_siglip(hf_config: Any, **overrides: Any) -> VisionConfig:
    """A VisionConfig whose trunk matches a ``SiglipVisionConfig``.

    Only the trunk fields are taken from ``hf_config``; the crop scheme and projection MLP
    (which SigLIP lacks) keep our defaults unless given in ``overrides``.
    """
    ours = _read(SIGLIP_VISION_FIELDS, hf_config, optional=("num_channels",))
    ours["gelu"] = gelu_kind(hf_config.hidden_act)
    return replace(VisionConfig(), **(ours | overrides))


# --- the reference's form -------------------------------------------------------------------


def update_section(section, values: Mapping[str, Any], name: str):
    """Return ``section`` with ``values`` applied; keys the dataclass lacks are reported.

    Reference-only keys that we derive instead (``prefix_attn``, ``group_size`` = unquantised)
    are accepted and checked rather than stored.
    """
    known = {f.name for f in dataclasses.fields(section)}
    updates: dict[str, Any] = {}
    for key, value in values.items():
        if key in known:
            default = getattr(section, key)
            updates[key] = tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
        elif key == "group_size":
            if value is not None:
                raise ConfigError(
                    f"{name}.group_size={value}: quantised (int4) checkpoints are not supported yet; "
                    "load the bf16/fp16 release"
                )
        elif key != "prefix_attn":  # prefix_attn is checked against the vision geometry in config_from_reference_dict
            raise ConfigError(f"unknown key {name}.{key} in model config")
    return replace(section, **updates)


def templates_from_dict(data: Mapping[str, Any]) -> Templates:
    """``{"caption": {length: ids}, "query": {"prefix": ids, "suffix": ids}, ...}`` → Templates."""
    return Templates(
        caption={k: tuple(v) for k, v in data.get("caption", {}).items()},
        **{
            f"{skill}_{part}": tuple(data.get(skill, {}).get(part, ()))
            for skill in TEMPLATE_SKILLS
            for part in ("prefix", "suffix")
        },
    )


def templates_to_dict(templates: Templates) -> dict[str, Any]:
    """Inverse of ``templates_from_dict``."""
    return {"caption": {k: list(v) for k, v in templates.caption.items()}} | {
        skill: {part: list(getattr(templates, f"{skill}_{part}")) for part in ("prefix", "suffix")}
        for skill in TEMPLATE_SKILLS
    }


def config_to_dict(config: MoondreamConfig) -> dict[str, Any]:
    """The reference's config form (sections text, vision, region, tokenizer) plus our own keys."""
    data = dataclasses.asdict(config)
    data["tokenizer"]["templates"] = templates_to_dict(config.tokenizer.templates)
    return data


def config_from_reference_dict(data: Mapping[str, Any], base: MoondreamConfig) -> MoondreamConfig:
    """Apply the reference's config form (sections text/vision/region/tokenizer) on ``base``."""
    unknown = set(data) - {*REFERENCE_SECTIONS, "generation", "profile", "dtype"}
    if unknown:
        raise ConfigError(f"unknown model config sections {sorted(unknown)}")
    sections = {
        name: update_section(getattr(base, name), data.get(name, {}), name)
        for name in ("text", "vision", "region", "generation")
    }
    tok_values = dict(data.get("tokenizer", {}))
    templates = tok_values.pop("templates", None)
    tokenizer = update_section(base.tokenizer, tok_values, "tokenizer")
    if templates is not None:
        tokenizer = replace(tokenizer, templates=templates_from_dict(templates))
    config = MoondreamConfig(
        **sections, tokenizer=tokenizer, profile=data.get("profile", base.profile), dtype=data.get("dtype", base.dtype)
    ).validate()
    declared_prefix = data.get("text", {}).get("prefix_attn")
    if declared_prefix is not None and declared_prefix != config.prefix_len:
        vision = config.vision
        raise ConfigError(
            f"text.prefix_attn={declared_prefix} disagrees with the vision geometry "
            f"(1 + ({vision.crop_size}/{vision.enc_patch_size})^2 = {config.prefix_len})"
        )
    return config


# --- config.json ----------------------------------------------------------------------------


OWN_FORM_KEYS = ("profile", "generation")  # written by config_to_dict, never by a release


def _base_for(section: Mapping[str, Any], profile: str | None) -> MoondreamConfig:
    """What a config's missing fields are read as. A release's config names only what differs from
    its profile. Ours (``config_to_dict``) lists every field it knew: a field it lacks is newer than
    the file, so it takes the dataclass default, the behaviour from before the field existed."""
    if profile is None and all(key in section for key in OWN_FORM_KEYS):
        return MoondreamConfig()
    return get_profile(profile or section.get("profile"))


def config_from_json(data: Mapping[str, Any], profile: str | None = None) -> MoondreamConfig:
    """Read a checkpoint's config in any of the forms we know (see the module docstring)."""
    if "phi_config" in data or "text_config" in data:
        return config_from_legacy(data, profile or "2024-03-13")
    if "config" in data:
        inner = data["config"] or {}
        if not isinstance(inner, Mapping):
            raise ConfigError("config.json: the 'config' key must hold an object")
        base = _base_for(inner, profile)
        dtype = data.get("torch_dtype") or base.dtype
        config = config_from_reference_dict(inner, base)
        return config if "dtype" in inner else replace(config, dtype=dtype)
    if any(key in data for key in REFERENCE_SECTIONS):
        return config_from_reference_dict(data, _base_for(data, profile))
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
    unknown = set(phi) - {theirs for theirs, _ in PHI_TEXT_FIELDS} - PHI_CHECKED_KEYS
    if unknown:
        raise ConfigError(f"unknown keys in phi_config: {sorted(unknown)}")
    text = _ours(PHI_TEXT_FIELDS, phi)
    text.setdefault("n_kv_heads", text.get("n_heads", base.text.n_heads))
    vision = vision_from_timm(dict(data.get("vision_config") or {}), base.vision)
    config = config_from_reference_dict({"text": text, "vision": vision}, base)
    return replace(config, dtype=data.get("torch_dtype") or base.dtype)


def vision_from_timm(section: Mapping[str, Any], base: VisionConfig) -> dict[str, Any]:
    """Our vision fields from the golden-only 2024 ``vision_config`` section (timm names)."""
    unknown = set(section) - {theirs for theirs, _ in TIMM_VISION_FIELDS} - TIMM_CHECKED_KEYS
    if unknown:
        raise ConfigError(f"unknown keys in vision_config: {sorted(unknown)}")
    vision = _ours(TIMM_VISION_FIELDS, section)
    if "mlp_ratio" in section:  # timm: hidden = int(width * ratio)
        vision["enc_ff_dim"] = int(vision.get("enc_dim", base.enc_dim) * section["mlp_ratio"])
    if "n_patches" in section:
        crop = vision.get("crop_size", base.crop_size) // vision.get("enc_patch_size", base.enc_patch_size)
        if section["n_patches"] != crop * crop:
            raise ConfigError(f"vision_config.n_patches {section['n_patches']} does not match the crop geometry")
    return vision
