"""Prompt token ids for each skill, from the profile's templates."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from .config import TokenizerConfig
from .spatial import Ref, ref_slot_ids
from .tokenizer import Tokenizer

CAPTION_LENGTHS = ("short", "normal", "long")
GROUNDED_REVISION = "2025-06-21"  # reasoning and spatial refs
REGION_REVISION = "2025-01-09"  # the region model: detect, point, gaze
GAZE_BEFORE, GAZE_AFTER = "\n\nPoint:", " gaze\n\n"  # the reference's (GPT-2 era) gaze text, around the eye


class PromptError(ValueError):
    pass


class PromptBuilder:
    def __init__(self, config: TokenizerConfig, tokenizer: Tokenizer):
        self.config = config
        self.templates = config.templates
        self.tokenizer = tokenizer

    @property
    def text_style(self) -> bool:
        return self.config.prompt_style == "text"

    def image_open_ids(self) -> list[int]:
        """Ids placed between BOS and the image (the text "<image>" in 2024-03-13)."""
        return self.tokenizer.encode(self.config.image_open_text) if self.config.image_open_text else []

    def stop_ids(self) -> tuple[int, ...]:
        """Any of these ends generation: the ids of ``stop_text`` if set, else the end id."""
        if self.config.stop_text:
            return tuple(dict.fromkeys(self.tokenizer.encode(self.config.stop_text)))
        return (self.config.eos_id,)

    def caption(self, length: str) -> list[int]:
        if self.text_style:
            key = f"caption_{length}"
            if key not in self.config.text_templates:
                raise PromptError(f"unknown caption length {length!r}")
            return self.tokenizer.encode(self.config.text_templates[key])
        if length not in self.templates.caption:
            known = ", ".join(repr(k) for k in self.templates.caption) or "none"
            raise PromptError(f"unknown caption length {length!r}; this model supports {known}")
        return list(self.templates.caption[length])

    @property
    def grounded(self) -> bool:
        """Whether the prompts have the special ids of reasoning and spatial refs (revision 2025-06-21)."""
        return not self.text_style and self.config.bos_id == 0 and bool(self.templates.query_prefix)

    def require_grounded(self, feature: str, profile: str) -> None:
        if not self.grounded:
            raise PromptError(f"{feature} needs revision {GROUNDED_REVISION}; this model's profile is {profile}")

    def query(self, question: str, history: str = "", refs: Sequence[Ref] = (), reasoning: bool = False) -> list[int]:
        """Query ids; ``refs`` (spatial references) take slots before the question, ``reasoning``
        ends the prompt with the thinking id instead of the answer ids."""
        text = _require_text(question, "question")
        if self.text_style:
            return self.tokenizer.encode(self.config.text_templates["query"].format(history=history, question=text))
        if history:
            raise PromptError(f"chat history is not part of the {self.config.prompt_style!r} prompt form")
        if self.config.question_space:
            text = " " + text
        t = self.templates
        slots = ref_slot_ids(refs, self.config)
        end = (self.config.thinking_id,) if reasoning else self.config.query_answer_ids
        return [*t.query_prefix, *slots, *self.tokenizer.encode(text), *t.query_suffix, *end]

    def gaze(self) -> tuple[list[int], list[int]]:
        """The gaze prompt's text ids before and after the eye's two coordinate slots."""
        return self.tokenizer.encode(GAZE_BEFORE), self.tokenizer.encode(GAZE_AFTER)

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
    for char in value:
        # Control characters (other than tab and newlines) and lone surrogates cannot be tokenised
        # meaningfully (a surrogate cannot even be encoded as UTF-8).
        if unicodedata.category(char) in ("Cc", "Cs") and char not in "\t\n\r":
            raise PromptError(f"{name} contains the control character U+{ord(char):04X}; remove it")
    return value
