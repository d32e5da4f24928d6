"""A transformers-style entry, so code written for the remote-code release runs on moonlet
with only its import line changed::

    from moonlet.transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained("vikhyatk/moondream2", revision="2024-03-13", trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained("vikhyatk/moondream2", revision="2024-03-13")
    enc = model.encode_image(image)
    print(model.answer_question(enc, "Describe this image.", tokenizer))

No code is ever run from a checkpoint: ``trust_remote_code`` is accepted and changes nothing,
``attn_implementation`` (e.g. "flash_attention_2") maps to our scaled-dot-product attention, and
any other keyword argument is a TypeError rather than silently dropped.
This module does not import transformers and works beside any version of it, or none.
"""

from __future__ import annotations

import os

from .api import Moondream
from .checkpoints.loading import resolve
from .tokenizer import Tokenizer

ACCEPTED_ATTENTION = {None, "eager", "sdpa", "flash_attention_2"}


def refuse_unsupported(where: str, unsupported: dict) -> None:
    """TypeError naming keyword arguments that moonlet does not implement (none are dropped silently)."""
    if unsupported:
        raise TypeError(f"{where} does not support {', '.join(sorted(unsupported))} in moonlet")


def device_from_map(device_map):
    """The one device of a ``device_map``: a device, "auto" (None: moonlet's default) or {"": device}."""
    if isinstance(device_map, dict):
        if set(device_map) != {""}:
            shape = 'a device or {"": device} (moonlet does not split models)'
            raise ValueError(f"device_map must be {shape}, got {device_map!r}")
        device_map = device_map[""]
    return None if device_map == "auto" else device_map


class AutoModelForCausalLM:
    """The ``transformers`` class's ``from_pretrained``, giving a ``Moondream``."""

    @staticmethod
    def from_pretrained(
        pretrained_model_name_or_path: str | os.PathLike,
        revision: str | None = None,
        trust_remote_code: bool = False,
        attn_implementation: str | None = None,
        torch_dtype=None,
        device_map=None,
        **unsupported,
    ) -> Moondream:
        """Load with ``moonlet.load``; ``device_map`` may be a device string or {"": device}."""
        import moonlet

        refuse_unsupported("AutoModelForCausalLM.from_pretrained", unsupported)
        if attn_implementation not in ACCEPTED_ATTENTION:
            choices = sorted(map(str, ACCEPTED_ATTENTION))
            raise ValueError(f"attn_implementation {attn_implementation!r} is not one of {choices}")
        device = device_from_map(device_map)
        return moonlet.load(pretrained_model_name_or_path, revision=revision, device=device, dtype=torch_dtype)


class AutoTokenizer:
    """The ``transformers`` class's ``from_pretrained``, giving the checkpoint's ``Tokenizer``."""

    @staticmethod
    def from_pretrained(
        pretrained_model_name_or_path: str | os.PathLike,
        revision: str | None = None,
        trust_remote_code: bool = False,
        **unsupported,
    ) -> Tokenizer:
        """The ``tokenizer.json`` beside the checkpoint (``trust_remote_code`` changes nothing)."""
        refuse_unsupported("AutoTokenizer.from_pretrained", unsupported)
        resolved = resolve(pretrained_model_name_or_path, revision)
        if resolved.tokenizer_file is None:
            raise FileNotFoundError(f"no tokenizer.json in {pretrained_model_name_or_path} (revision {revision})")
        return Tokenizer.from_file(resolved.tokenizer_file)
