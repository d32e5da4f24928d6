"""Rewording caption rows through any OpenAI-compatible chat endpoint (``/v1/chat/completions``).

Each caption is sent with the names of the objects annotated in its image and a prompt that
forbids adding facts. The reply replaces the caption only if it passes ``check_reply``: it is
non-empty, differs from the original, is at most ``MAX_GROWTH`` times as long (plus 100
characters), has at least half as many words (and at least ``MIN_WORDS``), and names no
category of the vocabulary (every detect/point object name in the dataset, and meta.json's
``categories``) that is neither annotated in that image nor in the original caption.
Otherwise, or when the request fails, the original is kept. Every caption's outcome is logged
to ``rewrites/log.jsonl`` (outside the rows the reader reads). Other rows are copied
unchanged, image paths made to point from the new directory; a reworded caption row loses its
``objects`` list (it no longer gives the order of mention).

Requests have bounded timeouts and are never retried; after ``max_failures`` failures in a row
the endpoint is not called again and the remaining captions are kept.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import httpx

from ..reader import DataFormatError, jsonl_files, parse_row
from ..shards import write_meta
from .names import mentions
from .output import prepare_out, relative_image

SYSTEM_PROMPT = (
    "You reword image captions for a training set. Use only the facts stated in the annotation you are "
    "given. Do not add any object, person, animal, colour, number, place, action or other detail that the "
    "annotation does not state, and do not guess. Keep it about as long as the original. Reply with the "
    "new caption only, with no preface and no quotes."
)
MAX_GROWTH, MIN_WORDS = 3, 3


def user_prompt(caption: str, objects: list[str]) -> str:
    listed = ", ".join(objects) if objects else "(none listed)"
    return f"Caption: {caption}\nObjects annotated in the image: {listed}\nReword the caption."


def chat_url(endpoint: str) -> str:
    """The chat completions URL from a base URL, a ``.../v1`` URL or the full URL."""
    endpoint = endpoint.rstrip("/")
    if endpoint.endswith("/chat/completions"):
        return endpoint
    return endpoint + ("/chat/completions" if endpoint.endswith("/v1") else "/v1/chat/completions")


def clean_reply(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text[1:-1].strip() if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'" else text


def check_reply(reply: str, original: str, known: set[str], vocabulary: set[str]) -> str | None:
    """None when ``reply`` may replace ``original``; otherwise why not."""
    if not reply:
        return "empty reply"
    if reply == original:
        return "unchanged"
    if len(reply) > MAX_GROWTH * len(original) + 100:
        return "too long"
    if len(reply.split()) < max(MIN_WORDS, len(original.split()) // 2):
        return "too short"
    added = mentions(reply, vocabulary) - known - mentions(original, vocabulary)
    return "names unannotated: " + ", ".join(sorted(added)) if added else None


class Rewriter:
    """Calls the endpoint; counts failures in a row and stops calling after ``max_failures``."""

    def __init__(
        self,
        endpoint: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_failures: int = 5,
        temperature: float = 0.7,
        max_tokens: int = 160,
        seed: int = 0,
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)))
        self.url, self.model, self.max_failures = chat_url(endpoint), model, max_failures
        self.options = {"temperature": temperature, "max_tokens": max_tokens}
        self.seed, self.failures = seed, 0

    def reword(self, caption: str, objects: list[str], number: int) -> tuple[str | None, str | None]:
        """(reply, None) or (None, error)."""
        if self.failures >= self.max_failures:
            return None, f"endpoint disabled after {self.max_failures} failures in a row"
        body = {
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_prompt(caption, objects)},
            ],
            **self.options,
            "seed": self.seed + number,
        }
        if self.model:
            body["model"] = self.model
        try:
            response = self.client.post(self.url, json=body)
            response.raise_for_status()
            reply = response.json()["choices"][0]["message"]["content"]
            if not isinstance(reply, str):
                raise ValueError("the reply has no text content")
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            self.failures += 1
            return None, f"request failed: {type(exc).__name__}: {exc}"[:300]
        self.failures = 0
        return clean_reply(reply), None

    def close(self) -> None:
        self.client.close()


def _rows(file: Path):
    with open(file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    yield number, row, parse_row(row, file.parent, check_images=False)
                except ValueError as exc:  # JSONDecodeError is one
                    raise DataFormatError(f"{file}:{number}: {exc}") from None


def annotated_names(files: list[Path], categories=()) -> tuple[dict[Path, set[str]], set[str]]:
    """Per image: the names of its non-empty detect/point rows and its captions' ``objects``;
    and the vocabulary: every such name in the dataset (absent ones too) plus ``categories``."""
    known: dict[Path, set[str]] = {}
    vocabulary = set(categories)
    for file in files:
        for _, _, row in _rows(file):
            names = [row.object] if row.object and (row.boxes or row.points) else list(row.objects or ())
            known.setdefault(row.image, set()).update(names)
            vocabulary.update(names + ([row.object] if row.object else []))
    return known, vocabulary


def rewrite_dataset(
    data: str | Path,
    out: str | Path,
    endpoint: str,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float = 30.0,
    max_failures: int = 5,
    temperature: float = 0.7,
    seed: int = 0,
    force: bool = False,
) -> dict:
    """Copy the rows of ``data`` (a dataset directory or JSONL file) to ``out``, captions reworded
    where the reply passes the check; image paths are made relative to ``out``. Returns meta.json's content."""
    files = jsonl_files(data)
    if Path(out).resolve() in {f.parent.resolve() for f in files}:
        raise ValueError(f"--out must not be the directory of the rows being reworded: {out}")
    source_meta = Path(data) / "meta.json"
    categories = json.loads(source_meta.read_text()).get("categories", []) if source_meta.is_file() else []
    known, vocabulary = annotated_names(files, categories)
    out = prepare_out(out, force, extra=("rewrites/log.jsonl",))
    (out / "rewrites").mkdir(exist_ok=True)
    meta = {
        "generator": "moonlet.data.convert.rewrite",
        "source": str(data),
        "endpoint": endpoint,
        "model": model,
        "temperature": temperature,
        "seed": seed,
        "system_prompt": SYSTEM_PROMPT,
        "complete": False,
    }
    write_meta(out, meta)
    outcomes: Counter = Counter()
    rewriter = Rewriter(endpoint, model, api_key, timeout, max_failures, temperature, seed=seed)
    try:
        with open(out / "rewrites" / "log.jsonl", "w", encoding="utf-8") as log:
            for file in files:
                with open(out / file.name, "w", encoding="utf-8") as target:
                    for number, raw, row in _rows(file):
                        raw = {**raw, "image": relative_image(row.image, out)}
                        if row.kind == "caption":
                            objects = sorted(known.get(row.image, ()))
                            reply, reason = rewriter.reword(row.caption, objects, sum(outcomes.values()))
                            reason = reason or check_reply(reply, row.caption, known.get(row.image, set()), vocabulary)
                            if reason is None:
                                raw = {k: v for k, v in raw.items() if k != "objects"}  # no longer in mention order
                                raw["caption"] = reply
                            outcomes["rewritten" if reason is None else reason.split(":")[0]] += 1
                            entry = {
                                "file": file.name,
                                "line": number,
                                "image": raw["image"],
                                "rewritten": reason is None,
                                "reason": reason,
                                "original": row.caption,
                                "reply": reply,
                            }
                            log.write(json.dumps(entry, ensure_ascii=False) + "\n")
                        target.write(json.dumps(raw, ensure_ascii=False) + "\n")
    finally:
        rewriter.close()
    meta.update(
        captions=sum(outcomes.values()),
        rewritten=outcomes["rewritten"],
        kept={k: v for k, v in sorted(outcomes.items()) if k != "rewritten"},
        files=[f.name for f in files],
        complete=True,
    )
    write_meta(out, meta)
    return meta
