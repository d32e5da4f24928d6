"""The trained BPE tokenizer: special ids fixed, digits always single tokens, text round-trips."""

from __future__ import annotations

import pytest

from moonlet.train.tokenizer_train import SPECIAL_TOKENS, train_tokenizer

TEXTS = ["There are 12 red squares and 345 circles.", 'The text "G94" is written on it.', "How many 2024?"] * 40


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=400)


def test_special_ids_keep_their_places(tokenizer):
    assert [tokenizer.backend.token_to_id(token) for token in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))


@pytest.mark.parametrize("text", ["12 red squares", "G94", "345", " 2024 x", 'reads "AB12"'])
def test_digits_are_single_tokens_and_text_round_trips(tokenizer, text):
    ids = tokenizer.encode(text)
    pieces = [tokenizer.decode([i]) for i in ids]
    digits = [p for p in pieces if any(c.isdigit() for c in p)]
    assert digits == [c for c in text if c.isdigit()]  # each digit alone, in order, nothing merged with it
    assert tokenizer.decode(ids) == text
