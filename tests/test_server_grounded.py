"""Reasoning, spatial refs, variants and gaze through the server: the real clients and raw HTTP.

The served model is md2-tiny with md2-tiny-grounded's raised bias (so reasoning grounds) and
md2-tiny-lora's adapter registered as "tiny"; every result is compared with the Python API.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import GOLDEN_GROUNDED, GOLDEN_LORA, GOLDEN_MODEL
from PIL import Image
from test_golden_grounded import EXPECTED, raise_bias

KEY = "grounded-test-key"
SETTINGS = {"temperature": 0, "max_tokens": 24}
QUESTION = "What is in this image?"
HEADERS = {"X-Moondream-Auth": KEY}


@pytest.fixture(scope="module")
def server():
    import moonlet
    from moonlet.server.app import create_app
    from moonlet.server.testing import running_server

    model = moonlet.load(
        GOLDEN_MODEL, device="cpu", dtype="float32", variants={"tiny": GOLDEN_LORA / "adapter.safetensors"}
    )
    raise_bias(model, EXPECTED["lm_head_bias_added"])
    app = create_app(model, api_key=KEY, name="moondream-test")
    with running_server(app) as base:
        yield base, app.state.moonlet.batcher


def direct(server, fn):
    return server[1].call(fn).result(timeout=120)


@pytest.fixture(scope="module")
def picture():
    return Image.open(GOLDEN_GROUNDED / "cases" / "astronaut.png").convert("RGB")


@pytest.fixture(scope="module")
def jpeg(picture):
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=95)  # what the moondream client sends
    return buffer.getvalue()


@pytest.fixture(scope="module")
def data_url(jpeg):
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


@pytest.fixture(scope="module")
def md(server):
    import moondream

    return moondream.vl(endpoint=f"{server[0]}/v1", api_key=KEY)


def test_moondream_client_query_with_reasoning(server, md, picture, jpeg):
    expected = direct(server, lambda m: m.query(jpeg, QUESTION, reasoning=True, settings=SETTINGS))
    assert expected["reasoning"]["grounding"]  # the raised bias makes it ground
    assert md.query(picture, QUESTION, reasoning=True, settings=SETTINGS) == expected


def test_moondream_client_query_with_spatial_refs(server, md, picture, jpeg):
    refs = [[0.1, 0.2, 0.5, 0.7], [0.6, 0.5]]
    expected = direct(server, lambda m: m.query(jpeg, QUESTION, spatial_refs=refs, settings=SETTINGS))
    assert md.query(picture, QUESTION, spatial_refs=refs, settings=SETTINGS) == expected
    both = direct(server, lambda m: m.query(jpeg, QUESTION, True, refs, settings=SETTINGS))
    assert md.query(picture, QUESTION, reasoning=True, spatial_refs=refs, settings=SETTINGS) == both


def sse_events(response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


def test_streamed_reasoning_comes_in_the_first_event(server, data_url, jpeg):
    expected = direct(server, lambda m: m.query(jpeg, QUESTION, reasoning=True, settings=SETTINGS))
    body = {"image_url": data_url, "question": QUESTION, "reasoning": True, "stream": True, "settings": SETTINGS}
    events = sse_events(httpx.post(f"{server[0]}/v1/query", json=body, headers=HEADERS, timeout=120))
    assert events[0]["reasoning"] == expected["reasoning"] and events[0]["chunk"] == ""
    assert "".join(e.get("chunk", "") for e in events) == expected["answer"] and events[-1]["completed"]


def test_variant_through_the_routes(server, data_url, jpeg):
    settings = {**SETTINGS, "variant": "tiny"}
    expected = direct(server, lambda m: m.caption(jpeg, settings=settings)["caption"])
    assert expected != direct(server, lambda m: m.caption(jpeg, settings=SETTINGS)["caption"])
    reply = httpx.post(
        f"{server[0]}/v1/caption", json={"image_url": data_url, "settings": settings}, headers=HEADERS, timeout=120
    )
    assert reply.json()["caption"] == expected
    points = direct(server, lambda m: m.point(jpeg, "eye", settings={"variant": "tiny", "max_objects": 2})["points"])
    body = {"image_url": data_url, "object": "eye", "settings": {"variant": "tiny", "max_objects": 2}}
    assert httpx.post(f"{server[0]}/v1/point", json=body, headers=HEADERS, timeout=120).json()["points"] == points


def test_mixed_variants_queued_together_each_get_their_own(server, data_url, jpeg):
    variants = [None, "tiny", None, "tiny"]
    expected = [
        direct(server, lambda m, v=v: m.query(jpeg, QUESTION, settings={**SETTINGS, "variant": v})["answer"])
        for v in variants
    ]

    def ask(variant):
        body = {"image_url": data_url, "question": QUESTION, "settings": {**SETTINGS, "variant": variant}}
        return httpx.post(f"{server[0]}/v1/query", json=body, headers=HEADERS, timeout=120).json()["answer"]

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(ask, variants)) == expected


def test_mixed_variants_decode_in_one_batch(server, jpeg):
    """Rows of the variant and of the base model, waiting together, run as one batch, and each row
    gets what it gets alone."""
    from moonlet.server.batcher import TextOptions
    from moonlet.server.testing import decode_together

    variants = ["tiny", None, None, "tiny"]
    alone = [
        direct(server, lambda m, v=v: m.query(jpeg, QUESTION, settings={**SETTINGS, "variant": v})["answer"])
        for v in variants
    ]
    model = server[1].model
    prompt, settings = model.prompts().query(QUESTION), model.sampling(SETTINGS)
    jobs = [(prompt, settings, jpeg, TextOptions(variant=v)) for v in variants]
    results = asyncio.run(decode_together(server[1], jobs))
    assert [r.text for r in results] == alone and len(set(alone)) == 2
    assert [r.figures.batch_size for r in results] == [len(variants)] * len(variants)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/query", {"question": "Hi?", "spatial_refs": [[0.2, 1.5]]}, "spatial_refs[0][1]"),
        ("/v1/query", {"question": "Hi?", "spatial_refs": [[0.6, 0.2, 0.5, 0.9]]}, "spatial_refs[0]"),
        ("/v1/query", {"question": "Hi?", "settings": {"variant": "nope"}}, "settings.variant"),
        ("/v1/query", {"question": "Hi?", "reasoning": "maybe"}, "reasoning"),
        ("/v1/caption", {"image_url": "IMAGE", "settings": {"variant": "nope"}}, "settings.variant"),
        ("/v1/detect", {"image_url": "IMAGE", "object": "x", "settings": {"variant": "nope"}}, "settings.variant"),
        ("/v1/gaze", {"image_url": "IMAGE"}, "eye"),
        ("/v1/gaze", {"image_url": "IMAGE", "eye": [0.5]}, "eye"),
        ("/v1/gaze", {"image_url": "IMAGE", "unstable_settings": {"prioritize_accuracy": True}}, "face"),
        ("/v1/gaze", {"image_url": "IMAGE", "eye": [0.5, 0.5], "settings": {"variant": "nope"}}, "settings.variant"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(server, data_url, path, body, field):
    body = {k: (data_url if v == "IMAGE" else v) for k, v in body.items()}
    reply = httpx.post(f"{server[0]}{path}", json=body, headers=HEADERS, timeout=120)
    assert 400 <= reply.status_code < 500 and reply.json()["error"].startswith(field), reply.text


def test_gaze_route(server, data_url, jpeg):
    expected = direct(server, lambda m: m.detect_gaze(jpeg, eye=(0.4, 0.35)))["gaze"]
    reply = httpx.post(
        f"{server[0]}/v1/gaze", json={"image_url": data_url, "eye": [0.4, 0.35]}, headers=HEADERS, timeout=120
    )
    assert reply.status_code == 200 and reply.json()["gaze"] == expected


def test_ollama_think_show_and_ps(server, jpeg):
    import ollama

    client = ollama.Client(host=server[0], headers={"Authorization": f"Bearer {KEY}"})
    expected = direct(server, lambda m: m.query(jpeg, QUESTION, reasoning=True, settings=SETTINGS))
    options = {"temperature": 0, "num_predict": 24}
    messages = [{"role": "user", "content": QUESTION, "images": [jpeg]}]
    reply = client.chat(model="moondream-test", messages=messages, think=True, options=options, stream=False)
    assert reply.message.thinking == expected["reasoning"]["text"] and reply.message.content == expected["answer"]
    parts = list(client.chat(model="moondream-test", messages=messages, think=True, options=options, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == expected["reasoning"]["text"]
    assert "".join(p.message.content for p in parts) == expected["answer"]
    generated = client.generate(model="moondream-test", prompt=QUESTION, images=[jpeg], think=True, options=options)
    assert generated.thinking == expected["reasoning"]["text"] and generated.response == expected["answer"]
    plain = client.chat(model="moondream-test", messages=messages, options=options, stream=False)
    assert plain.message.thinking is None
    shown = client.show("moondream-test")
    assert "thinking" in shown.capabilities and "vision" in shown.capabilities
    assert [m.model for m in client.ps().models] == ["moondream-test"]
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="moondream-test", messages=messages, think="high", stream=False)
    assert caught.value.status_code == 422 and "think" in caught.value.error
