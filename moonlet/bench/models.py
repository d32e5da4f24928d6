"""The models ``moonlet bench`` measures: the 2025-06-21 dimensions (or a tiny model of the same
shape) with cheap random weights, and loaded checkpoints cut to fewer layers."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..config import MoondreamConfig
from ..modeling.init import build_random, init_uniform_
from ..modeling.model import MoondreamModel
from ..profiles import PROFILES

PROFILE = "2025-06-21"


def bench_config(kind: str, layers: int | None = None, context: int | None = None) -> MoondreamConfig:
    """The real 2025-06-21 dimensions, or a tiny model of the same shape; optionally shallower."""
    config = PROFILES[PROFILE]
    if kind == "tiny":
        config = replace(
            config,
            text=replace(config.text, dim=128, ff_dim=256, n_layers=2, vocab_size=2048, n_heads=2, n_kv_heads=2),
            vision=replace(
                config.vision,
                enc_dim=32,
                enc_ff_dim=64,
                enc_n_layers=2,
                enc_n_heads=4,
                proj_out_dim=128,
                proj_inner_dim=128,
            ),
            region=replace(config.region, dim=128, inner_dim=128),
        )
    elif kind != "real":
        raise ValueError(f"unknown bench config {kind!r}")
    if layers:
        config = replace(
            config, text=replace(config.text, n_layers=layers), vision=replace(config.vision, enc_n_layers=layers)
        )
    if context:
        config = replace(config, text=replace(config.text, max_context=context))
    return config.validate()


def random_model(config: MoondreamConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> MoondreamModel:
    """An inference-only model with cheap deterministic weights, allocated once in ``dtype`` on ``device``."""
    return build_random(config, device, dtype, seed, init=init_uniform_).eval().requires_grad_(False)


def resize(model: MoondreamModel, layers: int | None = None, context: int | None = None) -> MoondreamModel:
    """Keep the first ``layers`` text and vision blocks of a loaded model; set its text context."""
    text, vision = model.config.text, model.config.vision
    if layers:
        text = replace(text, n_layers=min(layers, text.n_layers))
        vision = replace(vision, enc_n_layers=min(layers, vision.enc_n_layers))
        model.text.blocks = model.text.blocks[: text.n_layers]
        model.vision.blocks = model.vision.blocks[: vision.enc_n_layers]
    if context:
        text = replace(text, max_context=context)
    model.config = replace(model.config, text=text, vision=vision).validate()
    model.text.config, model.vision.config = text, vision
    model.text.init_buffers(model.device)
    return model
