"""moonlet: Moondream2 in PyTorch, with real checkpoint loading and a fast engine."""

from __future__ import annotations

import os

import torch

from .api import Moondream
from .checkpoints.loading import load_model
from .config import MoondreamConfig
from .generation.engine import EncodedImage

__version__ = "0.1.0"
__all__ = ["load", "Moondream", "MoondreamConfig", "EncodedImage", "__version__"]


def load(
    model: str | os.PathLike | None = None,
    revision: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    config: MoondreamConfig | dict | None = None,
    tokenizer=None,
    compile: bool = False,
    variants: dict[str, str | os.PathLike] | str | os.PathLike | None = None,
    allow_network: bool = False,
    quant: str | None = None,
    quant_parts=("text",),
) -> Moondream:
    """Load a model: a local directory or ``.safetensors`` file, a hub id such as
    ``vikhyatk/moondream2`` (with ``revision``), or the embedded model when ``model`` is None.

    ``device`` defaults to CUDA when available; ``dtype`` to the checkpoint's dtype on GPU and, on
    CPU, to what this CPU runs fastest (``moonlet.quant.plan_for()``: float32, with float16 weights
    for the large text and vision layers of a bfloat16 checkpoint where fbgemm is built in; bfloat16 on CPUs
    with native bfloat16). ``quant``: ``"int8"`` or ``"int4"`` weights for ``quant_parts`` (text,
    vision, region), quantised tensor by tensor while reading, with the CPU's fastest kernels.
    ``tokenizer`` overrides the checkpoint's tokenizer. ``compile`` runs the vision encoder and
    each decode step through ``torch.compile`` (CUDA graphs on GPU): slower first calls, faster
    steady state; for servers and long jobs. ``variants``: LoRA adapters by name
    (``{"name": path}``, or a directory of ``.safetensors`` / ``.pt`` files named by their stems), for
    ``settings={"variant": name}``; ``allow_network``: let a hosted variant id be downloaded from
    Moondream's API (``MOONDREAM_ENDPOINT``, ``MOONDREAM_API_KEY``).
    """
    net, own_tokenizer, resolved = load_model(model, revision, device, dtype, config, quant, quant_parts)
    name = str(model) if model is not None else "moonlet-nano"
    chosen = tokenizer if tokenizer is not None else own_tokenizer
    return Moondream(net, chosen, name=name, compile=compile, variants=variants, allow_network=allow_network)
