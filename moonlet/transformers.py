"""A transformers-style entry, so code written for the remote-code release runs on moonlet
with only its import line changed::

    from moonlet.transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained("vikhyatk/moondream2", revision="2024-03-13", trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained("vikhyatk/moondream2", revision="2024-03-13")
    enc = model.encode_image(image)
    print(model.answer_question(enc, "Describe this image.", tokenizer))

No code is ever run from a checkpoint: ``trust_remote_code`` is accepted and ignored, and
``attn_implementation`` (e.g. "flash_attention_2") maps to our scaled-dot-product attention.
This module does not import transformers and works beside any version of it, or none.
"""

from __future__ import annotations

import os

from .api import Moondream
from .checkpoints.loading import resolve
from .tokenizer import Tokenizer

ACCEPTED_ATTENTION = {None, "eager", "sdpa", "flash_attention_2"}


class AutoModelForCausalLM:
    @staticmethod
    def from_pretrained(
        pretrained_model_name_or_path: str | os.PathLike,
        revision: str | None = None,
        trust_remote_code: bool = False,
        attn_implementation: str | None = None,
        torch_dtype=None,
        device_map=None,
        **ignored,
    ) -> Moondream:
        """Load with ``moonlet.load``; ``device_map`` may be a device string or {"": device}."""
        import moonlet

        if attn_implementation not in ACCEPTED_ATTENTION:
            raise ValueError(f"attn_implementation {attn_implementation!r} is not one of {sorted(map(str, ACCEPTED_ATTENTION))}")
        device = device_map.get("") if isinstance(device_map, dict) else device_map
        if device == "auto":
            device = None
        return moonlet.load(pretrained_model_name_or_path, revision=revision, device=device, dtype=torch_dtype)


class AutoTokenizer:
    @staticmethod
    def from_pretrained(pretrained_model_name_or_path: str | os.PathLike, revision: str | None = None, **ignored) -> Tokenizer:
        resolved = resolve(pretrained_model_name_or_path, revision)
        if resolved.tokenizer_file is None:
            raise FileNotFoundError(f"no tokenizer.json in {pretrained_model_name_or_path} (revision {revision})")
        return Tokenizer.from_file(resolved.tokenizer_file)
