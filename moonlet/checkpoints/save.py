"""Writing a model in our own layout: ``model.safetensors`` (layout B names) + ``config.json``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .config_json import config_to_dict
from .weights import save_checkpoint


def save_pretrained(model, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Save a ``Moondream`` (or ``MoondreamModel``) with its tokenizer to ``directory``."""
    net = getattr(model, "model", model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_checkpoint(net.state_dict(), directory / "model.safetensors", dtype=dtype)
    config = config_to_dict(net.config)
    if dtype is not None:
        config["dtype"] = str(dtype).removeprefix("torch.")
    (directory / "config.json").write_text(json.dumps({"model_type": "moondream1", "config": config}, indent=1))
    tokenizer = getattr(model, "tokenizer", None)
    backend = getattr(tokenizer, "backend", None)
    if backend is not None and hasattr(backend, "save"):
        backend.save(str(directory / "tokenizer.json"))
    return directory
