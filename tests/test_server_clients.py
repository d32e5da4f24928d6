"""The server through the real clients: moondream, openai and ollama, against the golden model.

Every text result is compared with the Python API called directly (greedy) on the same bytes.
"""

from __future__ import annotations

import base64
import io

import fastapi  # noqa: F401
import pytest
import uvicorn  # noqa: F401
from conftest import GOLDEN_MODEL as MODEL_DIR  # noqa: E402
from PIL import Image  # noqa: E402

KEY = "client-test-key"
GREEDY = {"temperature": 0, "max_tokens": 12}
QUESTION = "What is in the picture?"


@pytest.fixture(scope="module")
def server():
    import moonlet
    from moonlet.server.app import create_app
    from moonlet.server.testing import running_server

    model = moonlet.load(MODEL_DIR, device="cpu")
    app = create_app(model, api_key=KEY, name="moondream-test")
    with running_server(app) as base:
        yield base, app.state.moonlet.batcher


def direct(batcher, fn):
    """Run ``fn(model)`` on the server's worker thread (the model's only user)."""
    return batcher.call(fn).result(timeout=60)


@pytest.fixture(scope="module")
def picture():
    pixels = bytes((x * 4 + y * 3) % 256 for y in range(48) for x in range(64) for _ in range(3))
    return Image.frombytes("RGB", (64, 48), pixels)


@pytest.fixture(scope="module")
def jpeg(picture):
    """The bytes the moondream client sends for ``picture`` (JPEG, quality 95)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def data_url(jpeg):
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


# --- the official moondream client ----------------------------------------------------------


@pytest.fixture(scope="module")
def md(server):
    import moondream

    return moondream.vl(endpoint=f"{server[0]}/v1", api_key=KEY)


def test_moondream_client_sends_the_jpeg_we_replay(md, picture, data_url):
    assert md.encode_image(picture).image_url == data_url


def test_moondream_caption_and_stream(server, md, picture, jpeg):
    expected = direct(server[1], lambda m: m.caption(jpeg, settings=GREEDY)["caption"])
    assert md.caption(picture, settings=GREEDY)["caption"] == expected
    pieces = list(md.caption(picture, stream=True, settings=GREEDY)["caption"])
    assert pieces and "".join(pieces) == expected
    short = direct(server[1], lambda m: m.caption(jpeg, "short", settings=GREEDY)["caption"])
    assert md.caption(picture, length="short", settings=GREEDY)["caption"] == short


def test_moondream_query_stream_and_text_only(server, md, picture, jpeg):
    expected = direct(server[1], lambda m: m.query(jpeg, QUESTION, settings=GREEDY)["answer"])
    assert md.query(picture, QUESTION, settings=GREEDY)["answer"] == expected
    assert "".join(md.query(picture, QUESTION, stream=True, settings=GREEDY)["answer"]) == expected
    no_image = direct(server[1], lambda m: m.query(None, QUESTION, settings=GREEDY)["answer"])
    assert md.query(question=QUESTION, settings=GREEDY)["answer"] == no_image


def test_moondream_detect_and_point(server, md, picture, jpeg):
    limit = {"max_objects": 3}
    objects = direct(server[1], lambda m: m.detect(jpeg, "face", settings=limit)["objects"])
    points = direct(server[1], lambda m: m.point(jpeg, "face", settings=limit)["points"])
    assert md.detect(picture, "face", settings=limit)["objects"] == objects
    assert md.point(picture, "face", settings=limit)["points"] == points
    assert 1 <= len(objects) <= 3 and set(objects[0]) == {"x_min", "y_min", "x_max", "y_max"}


def test_moondream_client_chat_goes_through_openai_route(server, md, picture, data_url, jpeg):
    if not hasattr(md, "chat"):
        pytest.skip("this moondream client has no chat()")
    expected = direct(server[1], lambda m: m.query(jpeg, QUESTION, settings=GREEDY)["answer"])
    content = [{"type": "image_url", "image_url": {"url": data_url}}, {"type": "text", "text": QUESTION}]
    reply = md.chat([{"role": "user", "content": content}], settings=GREEDY)
    assert reply["message"]["content"] == expected and reply["finish_reason"] == "length"


def test_moondream_client_with_wrong_key_gets_401(server, picture):
    import urllib.error

    import moondream

    with pytest.raises(urllib.error.HTTPError) as caught:
        moondream.vl(endpoint=f"{server[0]}/v1", api_key="wrong").caption(picture, settings=GREEDY)
    assert caught.value.code == 401


# --- the openai client ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def oa(server):
    import openai

    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, max_retries=0)


def _chat_messages(data_url):
    return [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [{"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": data_url}}],
        },
    ]


def test_openai_chat_completion_with_image(server, oa, data_url, jpeg):
    expected = direct(server[1], lambda m: m.query(jpeg, QUESTION, settings=GREEDY)["answer"])
    reply = oa.chat.completions.create(
        model="moondream-test", messages=_chat_messages(data_url), temperature=0, max_tokens=12
    )
    choice = reply.choices[0]
    assert choice.message.content == expected and choice.message.role == "assistant"
    assert choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 12 and reply.usage.prompt_tokens > 700  # image prefix included


def test_openai_streaming_with_usage(server, oa, data_url, jpeg):
    expected = direct(server[1], lambda m: m.query(jpeg, QUESTION, settings=GREEDY)["answer"])
    chunks = list(
        oa.chat.completions.create(
            model="moondream-test",
            messages=_chat_messages(data_url),
            temperature=0,
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 12


def test_openai_image_only_is_captioned(server, oa, data_url, jpeg):
    expected = direct(server[1], lambda m: m.caption(jpeg, settings=GREEDY)["caption"])
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url}}]}]
    reply = oa.chat.completions.create(model="x", messages=messages, temperature=0, max_tokens=12)
    assert reply.choices[0].message.content == expected


def test_openai_models_and_errors(server, oa):
    import openai

    assert [m.id for m in oa.models.list()] == ["moondream-test"]
    bad = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!"}}]}]
    with pytest.raises(openai.BadRequestError) as caught:
        oa.chat.completions.create(model="x", messages=bad, max_tokens=4)
    assert "messages.0.content.0.image_url.url" in caught.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server[0]}/v1", api_key="wrong", max_retries=0).models.list()


# --- the ollama client ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ol(server):
    import ollama

    return ollama.Client(host=server[0], headers={"Authorization": f"Bearer {KEY}"})


OLLAMA_OPTIONS = {"temperature": 0, "num_predict": 12}


def test_ollama_generate_and_stream(server, ol, jpeg):
    expected = direct(server[1], lambda m: m.query(jpeg, QUESTION, settings=GREEDY)["answer"])
    reply = ol.generate(model="moondream-test", prompt=QUESTION, images=[jpeg], options=OLLAMA_OPTIONS, stream=False)
    assert reply.response == expected and reply.done and reply.done_reason == "length"
    assert reply.eval_count == 12 and reply.prompt_eval_count > 700
    assert reply.total_duration >= reply.eval_duration > 0 and reply.prompt_eval_duration > 0
    parts = list(
        ol.generate(model="moondream-test", prompt=QUESTION, images=[jpeg], options=OLLAMA_OPTIONS, stream=True)
    )
    assert "".join(p.response for p in parts) == expected
    assert parts[-1].done and parts[-1].eval_count == 12 and not any(p.done for p in parts[:-1])


def test_ollama_chat_and_stream(server, ol, jpeg):
    expected = direct(server[1], lambda m: m.query(jpeg, QUESTION, settings=GREEDY)["answer"])
    messages = [{"role": "user", "content": QUESTION, "images": [jpeg]}]
    reply = ol.chat(model="moondream-test", messages=messages, options=OLLAMA_OPTIONS, stream=False)
    assert reply.message.role == "assistant" and reply.message.content == expected
    parts = list(ol.chat(model="moondream-test", messages=messages, options=OLLAMA_OPTIONS, stream=True))
    assert "".join(p.message.content for p in parts) == expected and parts[-1].done


def test_ollama_list_and_errors(server, ol):
    import ollama

    assert [m.model for m in ol.list().models] == ["moondream-test"]
    with pytest.raises(ollama.ResponseError) as caught:
        ol.generate(model="x", prompt="hi", images=[base64.b64encode(b"not an image").decode()], stream=False)
    assert caught.value.status_code == 400 and "images.0" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        ollama.Client(host=server[0]).list()
    assert caught.value.status_code == 401
