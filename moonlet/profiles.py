"""Named profiles: the configuration of each supported Moondream revision.

A profile is a complete ``MoondreamConfig`` at real size. Checkpoint ``config.json`` files are
read on top of the matching profile (``moonlet.checkpoints.config_json``), so an empty
``"config": {}`` means "the profile's defaults".
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .config import (
    ConfigError,
    GenerationDefaults,
    MoondreamConfig,
    RegionConfig,
    Templates,
    TextConfig,
    TokenizerConfig,
    VisionConfig,
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
# The vision tower trains from scratch on small data: a stride-2 conv stem, LayerNorm on the patch
# features and a fixed 2-D sin-cos position table (the pointing probe in docs/models/moonlet-nano.md);
# 192-pixel crops, 16-pixel patches: 12 x 12 image tokens.
PROFILES["moonlet-nano"] = MoondreamConfig(
    text=TextConfig(dim=192, ff_dim=768, n_layers=4, n_heads=3, n_kv_heads=3, vocab_size=2048, max_context=512),
    vision=VisionConfig(
        enc_dim=128,
        enc_n_layers=4,
        enc_ff_dim=512,
        enc_n_heads=2,
        proj_out_dim=192,
        proj_inner_dim=512,
        crop_size=192,
        enc_patch_size=16,
        crop_scheme="single",
        stem="conv",
        stem_channels=(32, 64),
        patch_norm=True,
        position_table="sincos",
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


def get_profile(name: str | None) -> MoondreamConfig:
    name = name or DEFAULT_PROFILE
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; known profiles: {', '.join(sorted(PROFILES))}") from None
