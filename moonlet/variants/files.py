"""Adapter files: the official variant key names and moonlet's own LoRA format, into a ``TextAdapter``.

- Official (``final.pt`` pickles from Moondream's API, or the same dict in safetensors):
  ``text_model.transformer.h.{i}.{mixer.Wqkv | mixer.out_proj | mlp.fc1 | mlp.fc2}.parametrizations.weight.0.{A | B}``;
  no scale; the output projection's update reads the attention block's input.
- moonlet (``moonlet train --mode lora``: ``trainable.safetensors`` of a run's checkpoint):
  ``text.blocks.{i}.{attn.qkv | attn.proj | mlp.fc1 | mlp.fc2}.lora_{a | b}``, scaled by alpha / rank (the
  file's ``lora_scale`` metadata, or the run's ``trainer_state.json`` beside it); every update reads its
  own layer's input.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import TextConfig
from ..modeling.lora import LayerAdapter, LowRank, TextAdapter

OFFICIAL_KEY = re.compile(
    r"text_model\.transformer\.h\.(\d+)\.(mixer\.Wqkv|mixer\.out_proj|mlp\.fc1|mlp\.fc2)"
    r"\.parametrizations\.weight\.0\.(A|B)"
)
MOONLET_KEY = re.compile(r"(?:model\.)?text\.blocks\.(\d+)\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.lora_(a|b)")
TARGET_NAMES = {
    "mixer.Wqkv": "qkv",
    "mixer.out_proj": "proj",
    "mlp.fc1": "fc1",
    "mlp.fc2": "fc2",
    "attn.qkv": "qkv",
    "attn.proj": "proj",
}


class VariantError(ValueError):
    """A variant that is unknown, unreadable or does not fit the model."""


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a ``.safetensors`` or ``.pt`` adapter file, and the safetensors metadata."""
    if not path.is_file():
        raise VariantError(f"variant file not found: {path}")
    if path.suffix == ".pt":
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise VariantError(f"{path}: not a readable PyTorch weights file ({exc})") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise VariantError(f"{path}: expected a dict of tensors")
        return dict(state), {}
    try:
        with safe_open(str(path), framework="pt") as source:
            return {k: source.get_tensor(k) for k in source.keys()}, dict(source.metadata() or {})
    except Exception as exc:
        raise VariantError(f"{path}: not a readable safetensors file ({exc})") from None


def target_shapes(config: TextConfig) -> dict[str, tuple[int, int]]:
    """(in, out) features of each adapted layer."""
    qkv_out = (config.n_heads + 2 * config.n_kv_heads) * config.head_dim
    return {
        "qkv": (config.dim, qkv_out),
        "proj": (config.dim, config.dim),
        "fc1": (config.dim, config.ff_dim),
        "fc2": (config.ff_dim, config.dim),
    }


def moonlet_scale(path: Path, metadata: dict[str, str]) -> float:
    if "lora_scale" in metadata:
        return float(metadata["lora_scale"])
    state = path.parent / "trainer_state.json"
    if state.is_file():
        config = json.loads(state.read_text()).get("config", {})
        if "lora_alpha" in config and "lora_rank" in config:
            return float(config["lora_alpha"]) / float(config["lora_rank"])
    raise VariantError(
        f"{path}: moonlet LoRA weights need their scale (alpha / rank): a 'lora_scale' metadata entry, "
        "or the run's trainer_state.json beside the file"
    )


def read_adapter(path: str | Path, name: str, config: TextConfig) -> TextAdapter:
    """A ``TextAdapter`` from an adapter file (either key form) or a training checkpoint directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "trainable.safetensors"
    tensors, metadata = load_tensors(path)
    parts: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    forms = set()
    for key, tensor in tensors.items():
        match = OFFICIAL_KEY.fullmatch(key) or MOONLET_KEY.fullmatch(key)
        if match is None:
            raise VariantError(f"{path}: {key!r} is not a LoRA weight of a text block (official or moonlet names)")
        forms.add("official" if match.re is OFFICIAL_KEY else "moonlet")
        layer, target, side = int(match[1]), TARGET_NAMES[match[2]], match[3].lower()
        if layer >= config.n_layers:
            raise VariantError(f"{path}: {key!r} names block {layer} but the model has {config.n_layers}")
        parts.setdefault((layer, target), {})[side] = tensor.float()
    if not parts:
        raise VariantError(f"{path}: no LoRA weights in the file")
    if len(forms) > 1:
        raise VariantError(f"{path}: mixes the official and moonlet key names")
    official = forms == {"official"}
    scale = 1.0 if official else moonlet_scale(path, metadata)
    shapes = target_shapes(config)
    layers: list[dict[str, LowRank]] = [{} for _ in range(config.n_layers)]
    for (layer, target), pair in sorted(parts.items()):
        if set(pair) != {"a", "b"}:
            raise VariantError(f"{path}: block {layer} {target} has only its {'A' if 'a' in pair else 'B'} matrix")
        a, b = pair["a"], pair["b"]
        fan_in, fan_out = shapes[target]
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != fan_in or b.shape[0] != fan_out or a.shape[0] != b.shape[1]:
            raise VariantError(
                f"{path}: block {layer} {target}: A {tuple(a.shape)} and B {tuple(b.shape)} do not fit a "
                f"{fan_in} → {fan_out} layer (A is (rank, {fan_in}), B is ({fan_out}, rank))"
            )
        if target == "proj" and official:  # the official files' output update reads the block's input
            target = "proj_from_input"
        layers[layer][target] = LowRank(a, b, scale)
    return TextAdapter(name, tuple(LayerAdapter(**found) if found else None for found in layers))


def convert_pt(source: str | Path, target: str | Path) -> Path:
    """Write a ``.pt`` adapter (read with ``weights_only=True``) as safetensors; returns ``target``."""
    tensors, _ = load_tensors(Path(source))
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(target), metadata={"format": "pt"})
    return target
