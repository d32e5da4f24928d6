"""Engine behaviour on the golden model: cache reuse, batching, streaming, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GOLDEN, golden_cases
from PIL import Image

import moonlet
from moonlet.generation.engine import ContextOverflowError
from moonlet.image import ImageError
from moonlet.prompts import PromptError

CASES = golden_cases()
GREEDY = {"temperature": 0, "max_tokens": 12}


@pytest.fixture(scope="module")
def model(golden_dir):
    return moonlet.load(golden_dir, device="cpu", dtype="float32")


# Engine tests use the single-tile cases (two crops each): the vision tower dominates CPU time.
CHEAP = [c for c in CASES if tuple(c["tiling"]) == (1, 1)]


def image_path(index: int):
    return GOLDEN / "cases" / CHEAP[index % len(CHEAP)]["image"]


def test_full_forward_equals_prefill_then_decode(model):
    """One causal pass over prefix + prompt + answer gives the logits of cached step-by-step decoding."""
    net = model.model
    case = CHEAP[0]
    encoded = model.encode_image(image_path(0))
    ids = case["query_prompt_ids"] + case["answer_ids"][:5]
    with torch.inference_mode():
        embeddings = torch.cat((net.prefix_embeddings(encoded.embedding), net.embed_tokens(torch.tensor([ids]))), dim=1)
        positions = torch.arange(embeddings.shape[1])[None]
        full = net.logits(net.forward_embeddings(embeddings, positions))[0, -6:]
    request = model.text_request(encoded, case["query_prompt_ids"], model.sampling(GREEDY))
    rows, _, logits = model.engine.start([request])
    stepped = [logits[0]]
    for token in case["answer_ids"][:5]:
        logits = model.engine.step(rows, torch.tensor([token]))
        stepped.append(logits[0])
    assert (torch.stack(stepped) - full).abs().max().item() < 1e-4


def test_prefix_cache_hit_equals_miss(model):
    model.prefix_cache.clear()
    before = dict(model.prefix_cache.stats())
    path = image_path(1)
    first = model.query(path, "What is in this image?", settings=GREEDY)["answer"]
    # the same pixels arriving as a fresh upload (bytes) must hit the cache
    second = model.query(path.read_bytes(), "What is in this image?", settings=GREEDY)["answer"]
    stats = model.prefix_cache.stats()
    assert stats["misses"] == before["misses"] + 1 and stats["hits"] == before["hits"] + 1
    assert first == second
    model.prefix_cache.clear()
    assert model.query(path, "What is in this image?", settings=GREEDY)["answer"] == first


def test_prefix_cache_is_bounded(model):
    from moonlet.generation.prefix_cache import PrefixCache

    one = model.encode_image(image_path(0)).nbytes
    small = PrefixCache(max_bytes=int(one * 1.5))
    originals = model.prefix_cache
    model.prefix_cache = small
    try:
        for index in range(2):
            model.encode_image(image_path(index))
        assert len(small.entries) == 1 and small.nbytes <= small.max_bytes
        model.encode_image(image_path(1))
        assert small.hits == 1  # the most recent image stayed
    finally:
        model.prefix_cache = originals


def test_many_queries_on_one_encoded_image_equal_fresh_encodes(model):
    encoded = model.encode_image(image_path(1))
    questions = ["What is in this image?", "Where?", "What colour is it?"]
    reused = [model.query(encoded, q, settings=GREEDY)["answer"] for q in questions + questions[:1]]
    fresh = []
    for q in questions + questions[:1]:
        model.prefix_cache.clear()
        fresh.append(model.query(image_path(1), q, settings=GREEDY)["answer"])
    assert reused == fresh
    assert reused[0] == reused[-1]


def test_batch_of_mixed_requests_equals_one_by_one(model):
    questions = ["What is in this image?", "Where?", "Count the cats.", "Is it red?"]
    items = [(image_path(i), q) for i, q in enumerate(questions)]
    batched = model.batch_query(items, settings=GREEDY)
    single = [model.query(img, q, settings=GREEDY) for img, q in items]
    assert batched == single


def test_batch_rows_with_their_own_max_tokens(model):
    from moonlet.generation.sampling import SamplingSettings

    prompts = model.prompts()
    encoded = [model.encode_image(image_path(i)) for i in range(3)]  # two images, one twice
    requests = [
        model.text_request(enc, prompts.query("What is in this image?"), SamplingSettings(max_tokens=n, temperature=0))
        for enc, n in zip(encoded, (3, 12, 7))
    ]
    batched = model.engine.generate(requests)
    assert [len(ids) for ids in batched] == [3, 12, 7]
    assert batched == [model.engine.generate([r])[0] for r in requests]


def test_streamed_text_joined_equals_non_streamed(model):
    encoded = model.encode_image(image_path(0))
    settings = {"temperature": 0, "max_tokens": 40}
    pieces = list(model.query(encoded, "What is in this image?", stream=True, settings=settings)["answer"])
    assert len(pieces) >= 1
    assert "".join(pieces) == model.query(encoded, "What is in this image?", settings=settings)["answer"]
    caption_pieces = list(model.caption(encoded, "short", stream=True, settings=settings)["caption"])
    assert "".join(caption_pieces) == model.caption(encoded, "short", settings=settings)["caption"]


def test_seeded_sampling_repeats(model):
    encoded = model.encode_image(image_path(0))
    settings = {"temperature": 1.0, "top_p": 0.95, "max_tokens": 20, "seed": 7}
    a = model.query(encoded, "What is in this image?", settings=settings)["answer"]
    b = model.query(encoded, "What is in this image?", settings=settings)["answer"]
    c = model.query(encoded, "What is in this image?", settings={**settings, "seed": 8})["answer"]
    assert a == b
    assert a != c


def test_query_without_image(model):
    answer = model.query(None, "What is in this image?", settings=GREEDY)["answer"]
    assert isinstance(answer, str) and answer
    assert answer != model.query(image_path(0), "What is in this image?", settings=GREEDY)["answer"]


def test_article_form(model):
    enc = model.encode_image(Image.open(image_path(0)))
    answer = model.answer_question(enc, "What is in this image?", model.tokenizer.backend, settings=GREEDY)
    assert answer == model.tokenizer.decode(CHEAP[0]["answer_ids"]).strip()
    short = model.answer_question(enc, "What is in this image?", model.tokenizer.backend, max_new_tokens=3)
    assert isinstance(short, str) and 0 < len(short) <= 3 * len("<12345>")


def test_clear_errors(model):
    with pytest.raises(PromptError, match="question is empty"):
        model.query(image_path(0), "   ")
    with pytest.raises(ValueError, match="unknown caption length 'medium'"):
        model.caption(image_path(0), length="medium")
    with pytest.raises(ImageError, match="expected a PIL image"):
        model.query(12345, "What?")
    with pytest.raises(ContextOverflowError, match=r"at most \d+ fit"):
        model.query(image_path(0), "x" * 2000, settings=GREEDY)
    with pytest.raises(Exception, match="unknown settings"):
        model.query(image_path(0), "What?", settings={"max_token": 3})


def test_numpy_image_equals_path(model):
    array = np.asarray(Image.open(image_path(1)).convert("RGB"))
    model.prefix_cache.clear()
    assert model.query(array, "What is in this image?", settings=GREEDY) == model.query(
        image_path(1), "What is in this image?", settings=GREEDY
    )
