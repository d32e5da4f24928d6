"""The user-facing model object: caption, query, detect, point, and the seed article's calls."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from . import gaze
from .generation.engine import EncodedImage, Engine, TextRequest
from .generation.locate import locate
from .generation.prefix_cache import PrefixCache, pixel_key
from .generation.reasoning import Reasoning, split_reasoning
from .generation.sampling import SamplingSettings, SettingsError
from .generation.streaming import TextStreamer
from .generation.structured import JsonGrammar, TokenConstraint, check_complete
from .image import ImageInput, load_image, make_crops, to_rgb
from .modeling.lora import TextAdapter
from .modeling.model import MoondreamModel
from .prompts import REGION_REVISION, PromptBuilder, PromptError
from .spatial import parse_spatial_refs, ref_embeddings
from .tokenizer import Tokenizer
from .variants import VariantRegistry

DEFAULT_PREFIX_CACHE_BYTES = 2 * 1024**3
# Hugging Face's clean_up_tokenization_spaces, as the 2024 release decoded with it.
_CLEANUP_PAIRS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def legacy_cleanup(text: str, stop_text: str = "<END>") -> str:
    """2024 answer clean-up: HF space clean-up; with the "<END>" stop text, drop a trailing
    "<" or "<END" as 2024-03-13 does; strip."""
    for before, after in _CLEANUP_PAIRS:
        text = text.replace(before, after)
    if stop_text == "<END>":
        text = re.sub(r"<$|<END$", "", text)
    return text.strip()


class Moondream:
    """A loaded model with its tokenizer and engine. Create it with ``moonlet.load``."""

    def __init__(
        self,
        model: MoondreamModel,
        tokenizer: Tokenizer | None,
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
        name: str | None = None,
        compile: bool = False,
        variants=None,
        allow_network: bool = False,
    ):
        self.model = model
        self.config = model.config
        self.tokenizer = Tokenizer(tokenizer) if tokenizer is not None else None
        self.engine = Engine(model, compile=compile)
        self.prefix_cache = PrefixCache(prefix_cache_bytes)
        self.name = name
        # settings["variant"]: registered adapters, adapter files, hosted ids (downloaded only with allow_network)
        self.variants = VariantRegistry(model.config.text, model.device, model.dtype, variants, allow_network)
        self._grammars: dict[int, JsonGrammar] = {}  # per tokenizer (by identity): its JSON-schema compiler

    def __repr__(self) -> str:
        where = f"device={self.model.device}, dtype={self.model.dtype}"
        return f"Moondream(name={self.name!r}, profile={self.config.profile!r}, {where})"

    # --- images ---------------------------------------------------------------------------

    def encode_image(self, image: ImageInput | EncodedImage | list, settings=None) -> EncodedImage | list[EncodedImage]:
        """Run the vision tower and prefill BOS + image once; later calls reuse the result.

        The same pixels (even a fresh upload of the same picture) hit a bounded LRU cache, keyed
        on the variant too (``settings["variant"]``: it changes the prefix's keys and values).
        A list of images gives a list of encoded images.
        """
        adapter = self.variants.adapter(settings)
        name = adapter.name if adapter else None
        if isinstance(image, EncodedImage):
            if image.variant != name:
                raise SettingsError(f"the image was encoded with variant {image.variant!r}, not {name!r}")
            return image
        if isinstance(image, (list, tuple)):
            return [self.encode_image(item, settings) for item in image]
        rgb = to_rgb(load_image(image))
        key = pixel_key(rgb) if adapter is None else f"{pixel_key(rgb)}:variant={name}"
        return self.prefix_cache.get_or_create(key, lambda: self._encode_rgb(rgb, adapter))

    def _encode_rgb(self, rgb, adapter: TextAdapter | None = None) -> EncodedImage:
        embedding = self.model.image_embedding(make_crops(rgb, self.config.vision))
        open_ids = self.prompts().image_open_ids() if self.config.tokenizer.image_open_text else []
        prefix = self.model.prefix_embeddings(embedding, open_ids)
        encoded = self.engine.prefill_prefix(prefix, self.model.mask_prefix_len, adapter)
        encoded.embedding = embedding
        return encoded

    def text_prefix(self, adapter: TextAdapter | None = None) -> EncodedImage:
        """The prefix of a query without an image: BOS alone, fully causal."""
        return self.engine.prefill_prefix(self.model.bos_embedding()[None], bidirectional=0, adapter=adapter)

    # --- skills ---------------------------------------------------------------------------

    def prompts(self, tokenizer: Any = None) -> PromptBuilder:
        """The prompt builder for this model's revision (``tokenizer`` overrides the loaded one)."""
        chosen = Tokenizer(tokenizer) if tokenizer is not None else self.tokenizer
        if chosen is None:
            raise ValueError("this model was loaded without a tokenizer; pass tokenizer= or load one with the model")
        return PromptBuilder(self.config.tokenizer, chosen)

    def sampling(self, settings: Mapping[str, Any] | None) -> SamplingSettings:
        """A settings dict (``max_tokens``, ``temperature``, ``top_p``, ``seed``) checked against this
        model's defaults and context; raises ``SettingsError`` on a bad or unknown key."""
        if settings is not None and not isinstance(settings, Mapping):
            raise SettingsError(f"settings must be a dict, got {type(settings).__name__}")
        chosen = SamplingSettings.from_settings(self.config.generation, settings)
        if chosen.max_tokens > self.engine.context:
            raise SettingsError(
                f"max_tokens must be at most {self.engine.context} (the model's context), got {chosen.max_tokens}"
            )
        return chosen

    def text_request(
        self,
        prefix: EncodedImage,
        prompt: list[int],
        settings: SamplingSettings,
        stream: bool = False,
        prompts=None,
        adapter: TextAdapter | None = None,
    ) -> TextRequest:
        """A request for ``Engine.generate``: prompt ids after a prefix, with this revision's stop ids.
        ``stream``: leave the stop id out (revisions with a stop text keep it otherwise, for clean-up);
        ``adapter``: the variant (``variants.adapter(settings)``), the prefix's own."""
        tok = self.config.tokenizer
        prompts = prompts or self.prompts()
        keep_stop = bool(tok.stop_text) and not stream
        return TextRequest(
            prefix,
            prompt,
            settings,
            prompts.stop_ids(),
            masked_ids=tok.masked_after_first,
            keep_stop=keep_stop,
            adapter=adapter,
        )

    def constraint(self, settings, prompts: PromptBuilder | None = None) -> TokenConstraint | None:
        """The grammar of ``settings["json_schema"]`` (a JSON schema the reply must match), or None."""
        schema = settings.get("json_schema") if isinstance(settings, Mapping) else None
        if schema is None:
            return None
        prompts = prompts or self.prompts()
        grammar = self._grammars.get(id(prompts.tokenizer.backend))
        if grammar is None:
            grammar = JsonGrammar(prompts.tokenizer.to_json(), self.config.text.vocab_size, prompts.stop_ids())
            self._grammars[id(prompts.tokenizer.backend)] = grammar
        return grammar.constraint(schema)

    def reasoning_spec(self) -> Reasoning:
        """How this revision reasons: ends at the answer id; eos and size ids masked after the first token."""
        tok = self.config.tokenizer
        return Reasoning(
            tok.answer_id, tok.coord_id, (tok.eos_id, tok.size_id), (tok.start_ground_points_id, tok.end_ground_id)
        )

    def spatial_slots(self, refs, prompts: PromptBuilder | None = None) -> dict[int, torch.Tensor]:
        """Prompt index → encoding for validated refs, whose slots follow the query prefix."""
        if not refs:
            return {}
        if self.model.region is None:
            raise PromptError(f"spatial_refs need a region model; the {self.config.profile} profile has none")
        start = len((prompts or self.prompts()).templates.query_prefix)
        return ref_embeddings(refs, self.model.region, start, self.model.device)

    def _finish_text(self, text: str) -> str:
        tok = self.config.tokenizer
        return legacy_cleanup(text, tok.stop_text) if tok.legacy_cleanup else text

    def _run_text(self, request: TextRequest, stream: bool, tokenizer: Tokenizer) -> str | Iterator[str]:
        if stream:
            return self._stream_text(request, tokenizer)
        (ids,) = self.engine.generate([request])
        check_complete(request.constraint, request.settings.max_tokens)
        return self._finish_text(tokenizer.decode(ids))

    def _stream_text(self, request: TextRequest, tokenizer: Tokenizer) -> Iterator[str]:
        tokens = (step.tokens[0] for step in self.engine.generate_stream([request]))
        return self._stream_tokens(tokens, tokenizer, request)

    def _stream_tokens(self, tokens: Iterator[int | None], tokenizer: Tokenizer, request: TextRequest) -> Iterator[str]:
        streamer = TextStreamer(tokenizer.decode)
        for token in tokens:
            piece = streamer.push(token) if token is not None else ""
            if piece:
                yield piece
        rest = streamer.finish()
        if rest:
            yield rest
        check_complete(request.constraint, request.settings.max_tokens)

    def caption(
        self,
        image: ImageInput | EncodedImage,
        length: str = "normal",
        stream: bool = False,
        settings=None,
        tokenizer=None,
    ) -> dict[str, Any]:
        """``{"caption": text}`` (an iterator of text pieces with ``stream``); ``length``: short, normal, long."""
        prompts = self.prompts(tokenizer)  # its caption() rejects unknown lengths
        sampling, adapter = self.sampling(settings), self.variants.adapter(settings)
        prefix = self.encode_image(image, settings)
        request = self.text_request(prefix, prompts.caption(length), sampling, stream, prompts, adapter)
        request.constraint = self.constraint(settings, prompts)
        return {"caption": self._run_text(request, stream, prompts.tokenizer)}

    def query(
        self,
        image: ImageInput | EncodedImage | None = None,
        question: str | None = None,
        reasoning: bool = False,
        spatial_refs=None,
        stream: bool = False,
        settings=None,
        tokenizer=None,
        chat_history: str = "",
    ) -> dict[str, Any]:
        """``{"answer": text}`` (an iterator of text pieces with ``stream``); no image: a text-only query.

        ``reasoning``: grounded reasoning first, returned as ``{"reasoning": {"text", "grounding"}}``
        (with ``stream``, computed before this returns; the answer streams). ``spatial_refs``: points
        ``(x, y)`` and boxes ``(x_min, y_min, x_max, y_max)``, normalised, for the question to refer to.
        """
        if not isinstance(reasoning, bool):
            raise SettingsError(f"reasoning must be true or false, got {reasoning!r}")
        prompts = self.prompts(tokenizer)
        refs = parse_spatial_refs(spatial_refs)
        if reasoning or refs:
            prompts.require_grounded("reasoning" if reasoning else "spatial_refs", self.config.profile)
        prompt = prompts.query(question, chat_history, refs, reasoning)
        sampling, adapter = self.sampling(settings), self.variants.adapter(settings)
        prefix = self.text_prefix(adapter) if image is None else self.encode_image(image, settings)
        request = self.text_request(prefix, prompt, sampling, stream, prompts, adapter)
        request.slots = self.spatial_slots(refs, prompts)
        request.constraint = self.constraint(settings, prompts)
        if not reasoning:
            return {"answer": self._run_text(request, stream, prompts.tokenizer)}
        request.reasoning = self.reasoning_spec()
        steps = self.engine.generate_stream([request])
        thought, answer_tokens = split_reasoning(steps, request.reasoning, prompts.tokenizer.decode)
        if stream:
            return {"reasoning": thought, "answer": self._stream_tokens(answer_tokens, prompts.tokenizer, request)}
        answer = prompts.tokenizer.decode([t for t in answer_tokens if t is not None])
        check_complete(request.constraint, request.settings.max_tokens)
        return {"reasoning": thought, "answer": self._finish_text(answer)}

    def detect(self, image: ImageInput | EncodedImage, object: str, settings=None, tokenizer=None) -> dict[str, Any]:
        """``{"objects": [{"x_min", "y_min", "x_max", "y_max"}, ...]}``, coordinates in [0, 1]."""
        return {"objects": self._locate(image, object, settings, tokenizer, with_size=True)}

    def point(self, image: ImageInput | EncodedImage, object: str, settings=None, tokenizer=None) -> dict[str, Any]:
        """``{"points": [{"x", "y"}, ...]}``, coordinates in [0, 1]."""
        return {"points": self._locate(image, object, settings, tokenizer, with_size=False)}

    def detect_gaze(self, image, eye=None, face=None, unstable_settings=None, settings=None) -> dict[str, Any]:
        """``{"gaze": {"x", "y"} | None}``: where the person whose eye is at ``eye`` (x, y) looks.

        ``unstable_settings``: ``prioritize_accuracy`` (needs ``face``, a box: 20 asks, outliers
        dropped; ``settings["seed"]`` makes it reproducible), ``force_detect`` (always decode a point).
        """
        return gaze.detect_gaze(self, image, eye, face, unstable_settings, settings)

    def _locate(self, image, obj, settings, tokenizer, with_size: bool) -> list[dict[str, float]]:
        if self.model.region is None:
            raise NotImplementedError(
                f"the {self.config.profile} profile has no region model; "
                f"detect and point need revision {REGION_REVISION} or later"
            )
        prompts = self.prompts(tokenizer)
        prompt = prompts.detect(obj) if with_size else prompts.point(obj)
        max_objects = self.config.generation.max_objects
        if settings:
            if "json_schema" in settings:
                raise SettingsError("json_schema applies to query and caption replies, not to detect and point")
            self.sampling({k: v for k, v in settings.items() if k != "max_objects"})
            max_objects = settings.get("max_objects", max_objects)
            context = self.engine.context
            if not isinstance(max_objects, int) or isinstance(max_objects, bool) or not 1 <= max_objects <= context:
                raise SettingsError(
                    f"max_objects must be an integer from 1 to {context} (the model's context), got {max_objects!r}"
                )
        adapter = self.variants.adapter(settings)
        prefix = self.encode_image(image, settings)
        eos = self.config.tokenizer.eos_id
        return locate(self.engine, prefix, prompt, with_size, max_objects, eos, adapter=adapter)

    # --- batching -------------------------------------------------------------------------

    def batch_query(
        self, items: Sequence[tuple[ImageInput | EncodedImage, str]], settings=None, tokenizer=None
    ) -> list[dict[str, str]]:
        """Answer several (image, question) pairs decoded together in one batch."""
        prompts = self.prompts(tokenizer)
        texts = self._batch_text([(img, prompts.query(q)) for img, q in items], settings, prompts)
        return [{"answer": text} for text in texts]

    def batch_caption(
        self, images: Sequence[ImageInput | EncodedImage], length: str = "normal", settings=None, tokenizer=None
    ) -> list[dict[str, str]]:
        """Caption several images decoded together in one batch."""
        prompts = self.prompts(tokenizer)
        texts = self._batch_text([(img, prompts.caption(length)) for img in images], settings, prompts)
        return [{"caption": text} for text in texts]

    def _batch_text(self, items: Sequence[tuple[Any, list[int]]], settings, prompts: PromptBuilder) -> list[str]:
        """(image, prompt ids) pairs decoded together; one finished text per pair."""
        sampling, adapter = self.sampling(settings), self.variants.adapter(settings)
        requests = [
            self.text_request(self.encode_image(img, settings), prompt, sampling, prompts=prompts, adapter=adapter)
            for img, prompt in items
        ]
        for request in requests:
            request.constraint = self.constraint(settings, prompts)
        outputs = self.engine.generate(requests)
        for request in requests:
            check_complete(request.constraint, request.settings.max_tokens)
        return [self._finish_text(prompts.tokenizer.decode(ids)) for ids in outputs]

    # --- the seed article's form ------------------------------------------------------------

    def answer_question(
        self,
        image_embeds: EncodedImage | ImageInput,
        question: str,
        tokenizer=None,
        chat_history: str = "",
        max_new_tokens: int | None = None,
        settings=None,
    ) -> str:
        """The article's call: ``query(...)["answer"].strip()``; ``chat_history`` is the 2024 prompt's
        "Question: …\n\nAnswer: …\n\n" turns."""
        settings = dict(settings or {})
        if max_new_tokens is not None:
            settings["max_tokens"] = max_new_tokens
        answer = self.query(
            image_embeds, question, settings=settings or None, tokenizer=tokenizer, chat_history=chat_history
        )["answer"]
        return answer.strip()

    def batch_answer(
        self, images: Sequence, prompts: Sequence[str], tokenizer=None, max_new_tokens: int | None = None
    ) -> list[str]:
        """The article-era batch call: one answer string per (image, prompt), decoded together."""
        if len(images) != len(prompts):
            raise ValueError(f"batch_answer got {len(images)} images but {len(prompts)} prompts")
        settings = {"max_tokens": max_new_tokens} if max_new_tokens is not None else None
        answers = self.batch_query(list(zip(images, prompts)), settings=settings, tokenizer=tokenizer)
        return [a["answer"].strip() for a in answers]

    @torch.inference_mode()
    def first_token_logits(
        self, image: ImageInput | EncodedImage | None, prompt: Sequence[int], slots=None, settings=None
    ) -> torch.Tensor:
        """Token-level entry point: logits (vocab,) for the token after ``prompt`` (``slots``: prompt
        index → embedding, e.g. ``spatial_slots(refs)``; ``image`` None: the text-only prefix)."""
        adapter = self.variants.adapter(settings)
        prefix = self.text_prefix(adapter) if image is None else self.encode_image(image, settings)
        greedy = SamplingSettings(temperature=0.0)
        request = TextRequest(prefix, list(prompt), greedy, slots=slots, adapter=adapter)
        _, _, logits = self.engine.start([request])
        return logits[0].float()
