"""Fast paths give the plain path's results: torch.compile (vision and decode step), bucketed
attention lengths, and a KV cache sized to the batch instead of the whole context."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import GOLDEN_MODEL as MODEL_DIR  # noqa: E402
from PIL import Image

import moonlet
from moonlet.generation.engine import KV_BUCKET, Engine, bucket

GREEDY = {"temperature": 0, "max_tokens": 24}


@pytest.fixture(scope="module")
def eager():
    # float32 everywhere: a CPU with native bf16 would load bf16, where fused kernels round differently
    return moonlet.load(MODEL_DIR, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def image():
    picture = Image.new("RGB", (64, 48), (30, 90, 200))
    picture.paste((220, 40, 40), (8, 8, 30, 30))
    return picture


def requests(model, image, questions, max_tokens=24):
    encoded = model.encode_image(image)
    settings = model.sampling({"temperature": 0, "max_tokens": max_tokens})
    return [model.text_request(encoded, model.prompts().query(q), settings) for q in questions]


def test_bucket_rounds_up_and_caps():
    assert bucket(1, 2048) == KV_BUCKET and bucket(KV_BUCKET, 2048) == KV_BUCKET
    assert bucket(KV_BUCKET + 1, 2048) == 2 * KV_BUCKET and bucket(2047, 2048) == 2048 and bucket(5000, 2048) == 2048


def test_cache_is_sized_to_the_batch_and_grows_when_needed(eager, image):
    engine = Engine(eager.model)
    short = requests(eager, image, ["What is this?"], max_tokens=4)
    out_short = engine.generate(short)
    prefix = short[0].prefix.length
    assert engine.cache.context == bucket(prefix + len(short[0].prompt) + 4, engine.context) < engine.context
    assert engine.cache.slots == 1
    longer = requests(eager, image, ["What is this?", "Describe the colours in detail."], max_tokens=200)
    out_long = engine.generate(longer)
    assert engine.cache.slots == 2 and engine.cache.context >= prefix + 200
    # the same requests on a cache that spans the whole context
    full = Engine(eager.model)
    full.cache = None
    full._ensure_slots(2, full.context)
    assert full.generate(short) == out_short and full.generate(longer) == out_long
    assert out_long[0][:4] == out_short[0]


def test_detect_on_a_sized_cache_equals_a_full_one(eager, image):
    # each object takes positions after the prompt: the sized cache must hold max_objects of them
    eager.engine = Engine(eager.model)
    sized = eager.detect(image, "square", settings={"max_objects": 40})["objects"]
    assert eager.engine.cache.context < eager.engine.context
    eager.engine._ensure_slots(1, eager.engine.context)
    assert eager.detect(image, "square", settings={"max_objects": 40})["objects"] == sized


def test_decode_step_and_vision_trace_as_one_graph_each(eager, image):
    # compile=True uses fullgraph=True, where a graph break is an error: tracing shows there is none
    engine = Engine(eager.model)
    (row,), _, _ = engine.start(requests(eager, image, ["What is this?"], max_tokens=4))
    positions, kv_len = torch.tensor([[row.position]]), bucket(row.position + 1, engine.cache.context)
    with torch.inference_mode():
        decode = torch._dynamo.explain(engine._decode_step)(torch.tensor([1]), positions, kv_len)
        pixels = eager.model.crops(image).normalized()
        vision = torch._dynamo.explain(eager.model.vision)(pixels)
    for explanation in (decode, vision):
        assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons


NO_COMPILER = not (shutil.which("g++") or shutil.which("c++"))


@pytest.mark.skipif(NO_COMPILER, reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_decode_and_vision_equal_eager(eager, image):
    questions = ["What is this?", "Is there a red square in the picture?"]
    expected = eager.engine.generate(requests(eager, image, questions))
    eager_embedding = eager.model.image_embedding(eager.model.crops(image))
    compiled = moonlet.load(MODEL_DIR, device="cpu", dtype="float32", compile=True)
    assert compiled.engine.compiled
    got = compiled.engine.generate(requests(compiled, image, questions))
    assert got == expected
    with torch.inference_mode():
        embedding = compiled.model.image_embedding(compiled.model.crops(image))
    assert (embedding - eager_embedding).abs().max().item() < 1e-4
    # the first step of a prompt on a cached prefix takes the same path as a fresh one
    answers = [m.query(image, "What is this?", settings=GREEDY)["answer"] for m in (compiled, eager)]
    assert answers[0] == answers[1]
