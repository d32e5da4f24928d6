"""Training a small byte-level BPE tokenizer whose special ids match the profile's templates.

Digits are split into single digits before BPE, so "128" is three tokens: a small model then
learns ten digit tokens instead of one token per number seen in training."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from ..config import Templates, TokenizerConfig
from ..tokenizer import Tokenizer

# Index = id: bos/eos 0, skill open 1, separator 2, answer 3, thinking 4, coord 5, size 6,
# ground start 7, (unused) 8, ground end 9 — the ids TokenizerConfig's defaults name.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|md_reserved_0|>",
    "<|md_reserved_1|>",
    "<|md_reserved_2|>",
    "<|md_reserved_3|>",
    "<|coord|>",
    "<|size|>",
    "<|ground_start|>",
    "<|reserved_8|>",
    "<|ground_end|>",
)
TEMPLATE_WORDS = ("describe", "short", "normal", "long", "query", "detect", "point")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2) -> Tokenizer:
    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_with_template_words(texts), trainer=trainer)
    for index, token in enumerate(SPECIAL_TOKENS):
        if backend.token_to_id(token) != index:
            raise RuntimeError(f"special token {token} did not get id {index}")
    return Tokenizer(backend)


def _with_template_words(texts: Iterable[str]) -> Iterator[str]:
    yield from (" ".join(TEMPLATE_WORDS),) * 10
    yield from texts


def row_texts(rows) -> Iterator[str]:
    """The texts of dataset rows (captions, questions, answers, object names)."""
    for row in rows:
        for text in (row.caption, row.question, row.answer, row.object):
            if text:
                yield text
                if text is row.object:
                    yield " " + text  # objects are encoded with a leading space


def templates_for(tokenizer: Tokenizer) -> Templates:
    """The md2 template structure (skill, separator, argument, answer id) in this tokenizer's ids."""
    enc = tokenizer.encode
    return Templates(
        caption={length: (1, *enc("describe"), 2, *enc(length), 3) for length in ("short", "normal", "long")},
        query_prefix=(1, *enc("query"), 2),
        query_suffix=(3,),
        detect_prefix=(1, *enc("detect"), 2),
        detect_suffix=(3,),
        point_prefix=(1, *enc("point"), 2),
        point_suffix=(3,),
    )


def tokenizer_config_for(tokenizer: Tokenizer, base: TokenizerConfig) -> TokenizerConfig:
    return replace(base, templates=templates_for(tokenizer), hub_repo=None)


def save_tokenizer(tokenizer: Tokenizer, path: Path) -> None:
    tokenizer.backend.save(str(path))


def main(argv: list[str] | None = None) -> int:
    """``python -m moonlet.train.tokenizer_train --data A [B ...] --out tokenizer.json``"""
    import argparse

    from ..data.reader import iter_rows

    parser = argparse.ArgumentParser(prog="python -m moonlet.train.tokenizer_train", description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", required=True, help="datasets whose texts the tokenizer learns")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--vocab-size", type=int, default=2048)
    args = parser.parse_args(argv)
    rows = (row for path in args.data for row in iter_rows(path, check_images=False))
    tokenizer = train_tokenizer(row_texts(rows), args.vocab_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_tokenizer(tokenizer, args.out)
    print(f"{args.out}: {tokenizer.backend.get_vocab_size()} tokens")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
