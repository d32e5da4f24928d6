"""Property-based fuzzing (hypothesis) of image decoding and request parsing: whatever comes in,
the answer is an image, a named ImageError/ApiError, or a 2xx/4xx JSON reply, never a crash."""

from __future__ import annotations

import base64
import io
import json

import pytest
from conftest import GOLDEN_MODEL as MODEL_DIR  # noqa: E402
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from moonlet.image import ImageError, load_image, to_rgb

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _encoded(fmt: str, mode: str = "RGB", **options) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (9, 7), 120).save(buffer, format=fmt, **options)
    return buffer.getvalue()


SEEDS = [
    _encoded("PNG"),
    _encoded("JPEG"),
    _encoded("GIF", "P"),
    _encoded("WEBP"),
    _encoded("BMP"),
    _encoded("TIFF"),
    _encoded("PNG", "I;16"),
]


@st.composite
def mutated_images(draw) -> bytes:
    """A valid file of some format with bytes flipped, cut or inserted."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        if action == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            data = data[:at]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def _decode_or_refuse(data: bytes) -> None:
    try:
        image = load_image(data, max_pixels=4_000_000)
    except ImageError as exc:
        assert str(exc)
        return
    try:
        rgb = to_rgb(image)
    except (OSError, ValueError) as exc:  # a file whose pixel data breaks only when decoded fully
        pytest.fail(f"decoded header but to_rgb failed: {type(exc).__name__}: {exc}")
    assert rgb.mode == "RGB" and rgb.width * rgb.height > 0


@FUZZ
@given(mutated_images())
def test_mutated_image_files_decode_or_are_refused(data):
    _decode_or_refuse(data)


@FUZZ
@given(st.binary(max_size=256))
def test_random_bytes_decode_or_are_refused(data):
    _decode_or_refuse(data)


@FUZZ
@given(
    st.one_of(
        st.text(max_size=80),
        st.binary(max_size=60).map(lambda b: "data:image/png;base64," + base64.b64encode(b).decode()),
        st.integers(),
        st.none(),
    )
)
def test_image_fields_give_image_or_named_error(value):
    from moonlet.server.errors import ApiError
    from moonlet.server.inputs import decode_image

    try:
        decode_image(value, "image_url")
    except ApiError as exc:
        assert 400 <= exc.status < 500 and exc.message.startswith("image_url")


# --- request bodies against a running server ---------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = [
    "image_url",
    "question",
    "object",
    "length",
    "stream",
    "settings",
    "model",
    "messages",
    "prompt",
    "images",
    "options",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "reasoning",
    "format",
]
settings_values = st.dictionaries(
    st.sampled_from(["max_tokens", "temperature", "top_p", "seed", "max_objects", "junk"]), json_values, max_size=3
)
bodies = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=6),
    json_values | settings_values | st.just("data:image/png;base64," + base64.b64encode(SEEDS[0]).decode()),
    max_size=5,
)
ROUTES = ["/v1/caption", "/v1/query", "/v1/detect", "/v1/point", "/v1/chat/completions", "/api/generate", "/api/chat"]


@pytest.fixture(scope="module")
def fuzz_client():
    import fastapi  # noqa: F401
    import httpx

    import moonlet
    from moonlet.server.app import create_app
    from moonlet.server.testing import running_server

    # a fuzzed max_tokens may still ask for the whole context (768 tokens, 14 s measured on 2 cores): the
    # timeout is far above that, so a valid request is answered, never cut off by a 504
    app = create_app(moonlet.load(MODEL_DIR, device="cpu"), name="tiny", request_timeout_s=120.0)
    with running_server(app) as base, httpx.Client(base_url=base, timeout=180) as client:
        yield client


def _cap_generation(route: str, body: dict) -> None:
    """Keep an accepted generation short (the tiny model's default is 768 tokens) in each protocol's own
    field; a field that is already there and not an object is left as it is, to be refused."""
    if route.startswith("/v1/chat"):
        body.setdefault("max_tokens", 4)
        return
    if route.startswith("/v1/"):
        field, cap = "settings", {"max_tokens": 4}
        if route in ("/v1/detect", "/v1/point"):
            cap["max_objects"] = 4
    else:
        field, cap = "options", {"num_predict": 4}
    value = body.setdefault(field, {})
    if isinstance(value, dict):
        for key, limit in cap.items():
            value.setdefault(key, limit)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(route=st.sampled_from(ROUTES), body=bodies | json_values)
def test_any_json_body_gets_a_2xx_or_4xx_reply(fuzz_client, route, body):
    """A random JSON body may be a valid request (``{}`` is Ollama's load call): 2xx or 4xx, never 5xx."""
    if isinstance(body, dict):
        _cap_generation(route, body)
        body.setdefault("stream", False)
    reply = fuzz_client.post(route, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    code = reply.status_code
    assert 200 <= code < 300 or 400 <= code < 500, (route, body, code, reply.text)
    if reply.status_code >= 400:
        assert "error" in reply.json(), (route, body, reply.text)
    if not isinstance(body, dict):
        assert reply.status_code == 422, (route, body, reply.text)  # a JSON value that is not an object


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), raw=st.binary(min_size=1, max_size=64).filter(lambda raw: not _is_json(raw)))
def test_bytes_that_are_not_json_get_a_400(fuzz_client, route, raw):
    reply = fuzz_client.post(route, content=raw, headers={"content-type": "application/json"})
    assert reply.status_code == 400, (route, raw, reply.text)
    error = reply.json()["error"]
    assert (error["message"] if isinstance(error, dict) else error).strip(), reply.text


@pytest.mark.parametrize("route", ROUTES)
def test_an_empty_body_gets_a_422(fuzz_client, route):
    reply = fuzz_client.post(route, content=b"", headers={"content-type": "application/json"})
    assert reply.status_code == 422 and "error" in reply.json(), reply.text
