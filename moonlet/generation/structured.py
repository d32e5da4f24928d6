"""Structured output: replies constrained to a JSON schema, through llguidance.

A ``JsonGrammar`` is made once per tokenizer and vocabulary; ``constraint(schema)`` gives a
fresh ``TokenConstraint`` per request. The engine asks each constrained row for the ids allowed
next (a boolean mask over the logits) and tells it every id it chose. The grammar ends with the
request's stop ids, so a row stops once its JSON is complete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import torch

from .sampling import SettingsError

JSON_OBJECT = {"type": "object"}  # any JSON object: OpenAI's response_format json_object, Ollama's "json"
# Replies are laid out as json.dumps does, with no free whitespace (a model could pad it forever);
# a schema's own "x-guidance" options override these.
LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class SchemaError(SettingsError):
    """A ``json_schema`` that is not a usable JSON schema; ``detail`` says why."""

    def __init__(self, detail: str):
        super().__init__(f"json_schema: {detail}")
        self.detail = detail


class IncompleteJsonError(SettingsError):
    """The reply reached its token limit before its JSON was complete."""


def _llguidance():
    try:
        import llguidance
    except ImportError:  # pragma: no cover - a core dependency; only a broken install lacks it
        raise SettingsError("json_schema needs the llguidance package: pip install llguidance") from None
    return llguidance


class TokenConstraint:
    """One row's grammar state: which ids may come next, advanced by each id the row takes."""

    def __init__(self, matcher, vocab_size: int):
        self.matcher = matcher
        self.vocab_size = vocab_size
        self._bits = torch.arange(8, dtype=torch.uint8)

    def allowed(self) -> torch.Tensor:
        """(vocab_size,) bool: the ids the grammar accepts next."""
        packed = torch.frombuffer(bytearray(self.matcher.compute_bitmask()), dtype=torch.uint8)
        mask = ((packed[:, None] >> self._bits) & 1).flatten().bool()  # little-endian bits: id = 8·byte + bit
        return mask[: self.vocab_size]

    def advance(self, token: int) -> None:
        if not self.matcher.consume_token(int(token)):
            raise RuntimeError(f"the grammar refused id {token}: {self.matcher.get_error()}")

    @property
    def complete(self) -> bool:
        """Whether the text so far is a whole value of the schema."""
        return bool(self.matcher.is_accepting())


class JsonGrammar:
    """JSON-schema constraints for one tokenizer (``tokenizer_json``: its ``tokenizer.json`` text)."""

    def __init__(self, tokenizer_json: str, vocab_size: int, stop_ids: Sequence[int]):
        llguidance = _llguidance()
        self.vocab_size = vocab_size
        self.tokenizer = llguidance.LLTokenizer(tokenizer_json, n_vocab=vocab_size, eos_token=list(stop_ids))
        self._compiled = lru_cache(maxsize=64)(self._compile)

    def _compile(self, schema_text: str) -> str:
        llguidance = _llguidance()
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema_text, defaults=LAYOUT)
        except ValueError as exc:
            raise SchemaError(str(exc)) from None
        error = llguidance.LLMatcher.validate_grammar(grammar, self.tokenizer)
        if error:
            raise SchemaError(error)
        return grammar

    def constraint(self, schema: Mapping[str, Any]) -> TokenConstraint:
        """A fresh constraint for one reply; SchemaError naming ``json_schema`` if it is unusable."""
        if not isinstance(schema, Mapping):
            raise SchemaError(f"must be a JSON schema object, got {type(schema).__name__}")
        try:
            text = json.dumps(schema, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"not JSON: {exc}") from None
        matcher = _llguidance().LLMatcher(self.tokenizer, self._compiled(text), log_level=0)
        if matcher.is_error():
            raise SchemaError(matcher.get_error())
        return TokenConstraint(matcher, self.vocab_size)


def check_complete(constraint: TokenConstraint | None, max_tokens: int) -> None:
    """IncompleteJsonError when a constrained reply stopped at its token limit mid-value."""
    if constraint is not None and not constraint.complete:
        raise IncompleteJsonError(
            f"json_schema: the reply reached max_tokens ({max_tokens}) before its JSON was complete; raise max_tokens"
        )
