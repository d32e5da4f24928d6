"""Prompt token ids for each skill, from the profile's templates."""

from __future__ import annotations

from .config import TokenizerConfig
from .tokenizer import Tokenizer

CAPTION_LENGTHS = ("short", "normal", "long")


class PromptError(ValueError):
    pass


class PromptBuilder:
    def __init__(self, config: TokenizerConfig, tokenizer: Tokenizer):
        self.config = config
        self.templates = config.templates
        self.tokenizer = tokenizer

    def caption(self, length: str) -> list[int]:
        if length not in self.templates.caption:
            known = ", ".join(repr(k) for k in self.templates.caption) or "none"
            raise PromptError(f"unknown caption length {length!r}; this model supports {known}")
        return list(self.templates.caption[length])

    def query(self, question: str) -> list[int]:
        text = _require_text(question, "question")
        if self.config.question_space:
            text = " " + text
        t = self.templates
        return [*t.query_prefix, *self.tokenizer.encode(text), *t.query_suffix, *self.config.query_answer_ids]

    def detect(self, obj: str) -> list[int]:
        return self._region(obj, self.templates.detect_prefix, self.templates.detect_suffix)

    def point(self, obj: str) -> list[int]:
        return self._region(obj, self.templates.point_prefix, self.templates.point_suffix)

    def _region(self, obj: str, prefix: tuple[int, ...], suffix: tuple[int, ...]) -> list[int]:
        text = _require_text(obj, "object")
        if self.config.object_space:
            text = " " + text
        return [*prefix, *self.tokenizer.encode(text), *suffix]


def _require_text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise PromptError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise PromptError(f"{name} is empty")
    return value
