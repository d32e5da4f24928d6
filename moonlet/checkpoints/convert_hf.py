"""Convert transformers' SigLIP vision tower and Phi decoder into our parameter layout.

Used to check our modules against ``transformers.SiglipVisionModel`` and
``transformers.PhiForCausalLM`` (see ``tests/test_transformers_parity.py``), and to start
from any SigLIP or Phi checkpoint. transformers itself is not imported here: the functions
take plain state dicts. The configs map through ``moonlet.checkpoints.config_json``
(``text_config_from_phi``, ``vision_config_from_siglip``).

Key convention: the returned dicts are named relative to the module they load into
(``VisionEncoder`` or ``TextDecoder``), e.g. ``blocks.0.attn.qkv.weight``. Pass
``prefix="vision."`` / ``prefix="text."`` to get ``MoondreamModel`` names instead.

Both transformers 4.x (``vision_model.`` prefix in ``SiglipVisionModel`` state dicts) and 5.x
(no prefix) are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..config import TextConfig, VisionConfig


def _select_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The keys under ``prefix`` with it removed, if any key has it; else the dict as is."""
    if any(key.startswith(prefix) for key in state_dict):
        return {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
    return dict(state_dict)


def _take(source: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in source:
        raise KeyError(f"transformers state dict lacks {key!r}")
    return source.pop(key)


def _check_shape(name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(tensor.shape)}")


# --- vision -------------------------------------------------------------------------------


def siglip_to_moonlet(
    state_dict: Mapping[str, torch.Tensor], config: VisionConfig, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Map a ``SiglipVisionModel`` state dict onto ``VisionEncoder`` names and shapes.

    The conv patch embedding (D, C, p, p) becomes the Linear weight (D, C·p·p), which is
    the channel-major patch flattening ``VisionEncoder.patchify`` uses. q/k/v projections are
    fused as [q ‖ k ‖ v]. The pooling head (``head.*``) is dropped. ``proj_mlp.*`` is not
    produced (SigLIP has no projection); any other unknown key is an error. Keys under
    ``vision_model.`` (transformers 4.x, or a full ``SiglipModel``) are used when present.
    """
    source = _select_prefix(state_dict, "vision_model.")
    for key in [k for k in source if k.startswith("head.")]:
        del source[key]
    source.pop("embeddings.position_ids", None)  # a buffer in older transformers versions
    dim, patch = config.enc_dim, config.enc_patch_size
    out: dict[str, torch.Tensor] = {}

    conv = _take(source, "embeddings.patch_embedding.weight")
    _check_shape("embeddings.patch_embedding.weight", conv, (dim, config.in_channels, patch, patch))
    out["patch_emb.weight"] = conv.reshape(dim, config.patch_dim)
    out["patch_emb.bias"] = _take(source, "embeddings.patch_embedding.bias")
    pos = _take(source, "embeddings.position_embedding.weight")
    _check_shape("embeddings.position_embedding.weight", pos, (config.n_patches, dim))
    out["pos_emb"] = pos[None]

    for i in range(config.enc_n_layers):
        hf, ours = f"encoder.layers.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            out[f"{ours}ln1.{part}"] = _take(source, f"{hf}layer_norm1.{part}")
            out[f"{ours}ln2.{part}"] = _take(source, f"{hf}layer_norm2.{part}")
            out[f"{ours}attn.qkv.{part}"] = torch.cat(
                [_take(source, f"{hf}self_attn.{name}_proj.{part}") for name in ("q", "k", "v")], dim=0
            )
            out[f"{ours}attn.proj.{part}"] = _take(source, f"{hf}self_attn.out_proj.{part}")
            for fc in ("fc1", "fc2"):
                out[f"{ours}mlp.{fc}.{part}"] = _take(source, f"{hf}mlp.{fc}.{part}")
    for part in ("weight", "bias"):
        out[f"post_ln.{part}"] = _take(source, f"post_layernorm.{part}")

    if source:
        raise KeyError(f"unexpected SigLIP keys (layer count or model type mismatch?): {sorted(source)[:8]}")
    return {prefix + key: value for key, value in out.items()}


# --- text ---------------------------------------------------------------------------------


def phi_to_moonlet(
    state_dict: Mapping[str, torch.Tensor], config: TextConfig, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Map a ``PhiForCausalLM`` state dict onto ``TextDecoder`` names and shapes.

    q/k/v projections are fused as [q ‖ k ‖ v] (k and v of n_kv_heads·head_dim rows each).
    A missing ``lm_head.weight`` (tied embeddings) is filled from the embedding.
    """
    source = dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    q_rows = config.n_heads * config.head_dim
    kv_rows = config.n_kv_heads * config.head_dim

    wte = _take(source, "model.embed_tokens.weight")
    _check_shape("model.embed_tokens.weight", wte, (config.vocab_size, config.dim))
    out["wte"] = wte
    for i in range(config.n_layers):
        hf, ours = f"model.layers.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            out[f"{ours}ln.{part}"] = _take(source, f"{hf}input_layernorm.{part}")
            q, k, v = (_take(source, f"{hf}self_attn.{name}_proj.{part}") for name in ("q", "k", "v"))
            for name, tensor, rows in (("q", q, q_rows), ("k", k, kv_rows), ("v", v, kv_rows)):
                if tensor.shape[0] != rows:
                    raise ValueError(f"{hf}self_attn.{name}_proj.{part}: {tensor.shape[0]} rows, expected {rows}")
            out[f"{ours}attn.qkv.{part}"] = torch.cat((q, k, v), dim=0)
            out[f"{ours}attn.proj.{part}"] = _take(source, f"{hf}self_attn.dense.{part}")
            for fc in ("fc1", "fc2"):
                out[f"{ours}mlp.{fc}.{part}"] = _take(source, f"{hf}mlp.{fc}.{part}")
    for part in ("weight", "bias"):
        out[f"post_ln.{part}"] = _take(source, f"model.final_layernorm.{part}")
    out["lm_head.weight"] = source.pop("lm_head.weight", wte)
    out["lm_head.bias"] = _take(source, "lm_head.bias")

    leftover = [k for k in source if "rotary_emb." not in k]  # inv_freq buffers in older versions
    if leftover:
        raise KeyError(f"unexpected Phi keys (layer count or model type mismatch?): {sorted(leftover)[:8]}")
    return {prefix + key: value for key, value in out.items()}
