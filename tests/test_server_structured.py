"""Structured output through the server: OpenAI ``response_format``, Ollama ``format`` and the
Moondream routes' ``settings.json_schema``, with the real clients, against the Python API."""

from __future__ import annotations

import asyncio
import base64
import json

import fastapi  # noqa: F401
import httpx
import jsonschema
import pytest
import uvicorn  # noqa: F401
from conftest import GOLDEN_GROUNDED, GOLDEN_MODEL
from test_structured_output import SCHEMA

KEY = "structured-key"
IMAGE = GOLDEN_GROUNDED / "cases" / "astronaut.png"
QUESTION = "What is in the picture?"
GREEDY = {"temperature": 0, "max_tokens": 80}


@pytest.fixture(scope="module")
def server():
    import moonlet
    from moonlet.server.app import create_app
    from moonlet.server.testing import running_server

    app = create_app(moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32"), api_key=KEY, name="md-test")
    with running_server(app) as base:
        yield base, app.state.moonlet.batcher


@pytest.fixture(scope="module")
def image_bytes():
    return IMAGE.read_bytes()


def direct(server, settings, question=QUESTION, image=IMAGE):
    return server[1].call(lambda m: m.query(image, question, settings=settings)["answer"]).result(timeout=120)


def test_openai_json_schema(server, image_bytes):
    import openai

    client = openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, max_retries=0)
    url = "data:image/png;base64," + base64.b64encode(image_bytes).decode()
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": url}}],
        }
    ]
    response_format = {"type": "json_schema", "json_schema": {"name": "scene", "schema": SCHEMA, "strict": True}}
    reply = client.chat.completions.create(
        model="md-test", messages=messages, temperature=0, max_tokens=80, response_format=response_format
    )
    content = reply.choices[0].message.content
    jsonschema.validate(json.loads(content), SCHEMA)
    assert content == direct(server, {**GREEDY, "json_schema": SCHEMA})
    assert reply.choices[0].finish_reason == "stop"
    with pytest.raises(openai.UnprocessableEntityError, match="max_tokens"):
        client.chat.completions.create(
            model="md-test", messages=messages, max_tokens=2, response_format={"type": "json_object"}
        )


def test_ollama_format(server, image_bytes):
    import ollama

    client = ollama.Client(host=server[0], headers={"Authorization": f"Bearer {KEY}"})
    options = {"temperature": 0, "num_predict": 80}
    reply = client.generate(model="md-test", prompt=QUESTION, images=[image_bytes], options=options, format=SCHEMA)
    jsonschema.validate(json.loads(reply.response), SCHEMA)
    assert reply.response == direct(server, {**GREEDY, "json_schema": SCHEMA})
    messages = [{"role": "user", "content": QUESTION, "images": [image_bytes]}]
    parts = list(client.chat(model="md-test", messages=messages, options=options, format=SCHEMA, stream=True))
    assert "".join(p.message.content for p in parts) == reply.response
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate(model="md-test", prompt=QUESTION, options={"num_predict": 2}, format="json")
    assert caught.value.status_code == 422 and "max_tokens" in caught.value.error


def test_moondream_route_settings_json_schema(server, image_bytes):
    url = "data:image/png;base64," + base64.b64encode(image_bytes).decode()
    headers = {"X-Moondream-Auth": KEY}
    body = {"image_url": url, "question": QUESTION, "settings": {**GREEDY, "json_schema": SCHEMA}}
    reply = httpx.post(f"{server[0]}/v1/query", json=body, headers=headers, timeout=120)
    assert reply.status_code == 200, reply.text
    answer = reply.json()["answer"]
    jsonschema.validate(json.loads(answer), SCHEMA)
    assert answer == direct(server, {**GREEDY, "json_schema": SCHEMA})
    caption_body = {"image_url": url, "settings": body["settings"], "stream": True}
    with httpx.stream("POST", f"{server[0]}/v1/caption", json=caption_body, headers=headers) as stream:
        assert stream.status_code == 200
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
    caption = "".join(e.get("chunk", "") for e in events)
    jsonschema.validate(json.loads(caption), SCHEMA)
    assert events[-1]["completed"] and "error" not in events[-1]


def test_constrained_and_free_rows_share_a_batch(server):
    """Rows with different schemas, or none, decoded in one batch give what each gives alone."""
    from moonlet.server.batcher import TextOptions
    from moonlet.server.testing import decode_together

    model, batcher = server[1].model, server[1]
    prompt = model.prompts().query(QUESTION)
    settings = model.sampling(GREEDY)
    schemas = [SCHEMA, None, {"enum": ["a", "b"]}, SCHEMA]
    alone = [direct(server, {**GREEDY, **({"json_schema": s} if s else {})}) for s in schemas]

    image = model.encode_image(IMAGE)
    jobs = [(prompt, settings, image, TextOptions(json_schema=s)) for s in schemas]
    results = asyncio.run(decode_together(batcher, jobs))
    assert [r.text for r in results] == alone
    assert [r.figures.batch_size for r in results] == [len(schemas)] * len(schemas)
