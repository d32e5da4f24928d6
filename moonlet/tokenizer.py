"""Text tokenizer: a thin adapter over ``tokenizers`` (or any object with encode/decode)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer


class TokenizerError(ValueError):
    pass


class Tokenizer:
    """Encodes text without special tokens; decodes skipping special tokens.

    Wraps a ``tokenizers.Tokenizer`` or a transformers tokenizer (anything with
    ``encode(text, add_special_tokens=False)`` and ``decode(ids, skip_special_tokens=True)``).
    """

    def __init__(self, backend: Any):
        if isinstance(backend, Tokenizer):
            backend = backend.backend
        self.backend = backend
        self._is_tokenizers = isinstance(backend, HFTokenizer)

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"tokenizer file not found: {path}")
        try:
            return cls(HFTokenizer.from_file(str(path)))
        except Exception as exc:
            raise TokenizerError(f"{path}: not a valid tokenizer.json ({exc})") from None

    def encode(self, text: str) -> list[int]:
        if self._is_tokenizers:
            return self.backend.encode(text, add_special_tokens=False).ids
        return list(self.backend.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=True)

    def to_json(self) -> str:
        """The ``tokenizer.json`` text of a ``tokenizers`` (or transformers fast) tokenizer."""
        backend = self.backend if self._is_tokenizers else getattr(self.backend, "backend_tokenizer", None)
        if not isinstance(backend, HFTokenizer):
            raise TokenizerError(f"{type(self.backend).__name__} has no tokenizer.json form (a fast tokenizer has)")
        return backend.to_str()

    def token_id(self, text: str) -> int | None:
        if self._is_tokenizers:
            return self.backend.token_to_id(text)
        return self.backend.convert_tokens_to_ids(text)
