"""The server at the HTTP level (httpx): every route, error statuses, auth, metrics, batching."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import fastapi  # noqa: F401
import httpx
import pytest
import uvicorn  # noqa: F401
from conftest import GOLDEN_MODEL as MODEL_DIR  # noqa: E402
from PIL import Image  # noqa: E402

KEY = "http-test-key"
AUTH = {"X-Moondream-Auth": KEY}
GREEDY = {"temperature": 0, "max_tokens": 8}
MAX_BODY = 1024 * 1024


@pytest.fixture(scope="module")
def served():
    import moonlet
    from moonlet.server.app import create_app
    from moonlet.server.testing import running_server

    model = moonlet.load(MODEL_DIR, device="cpu")
    app = create_app(model, api_key=KEY, max_batch=8, max_body_bytes=MAX_BODY, name="tiny")
    with running_server(app) as base:
        with httpx.Client(base_url=base, headers=AUTH, timeout=60) as client:
            yield client, app.state.moonlet, base


@pytest.fixture(scope="module")
def client(served):
    return served[0]


@pytest.fixture(scope="module")
def state(served):
    return served[1]


@pytest.fixture(scope="module")
def base(served):
    return served[2]


@pytest.fixture(scope="module")
def png():
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (30, 160, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def url(png):
    return "data:image/png;base64," + base64.b64encode(png).decode()


def direct(state, fn):
    return state.batcher.call(fn).result(timeout=60)


def sse_events(text: str) -> list:
    out = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


# --- small routes ---------------------------------------------------------------------------


def test_health_needs_no_key(base):
    reply = httpx.get(f"{base}/health")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "ok" and body["model"] == "tiny" and body["queue_depth"] == 0


def test_web_page_is_served_without_a_key(base):
    reply = httpx.get(f"{base}/")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    page = reply.text
    for needle in (
        "getUserMedia",
        "/v1/caption",
        "/v1/query",
        '"/v1/" + skill',
        "detect",
        "point",
        "<canvas",
        "X-Moondream-Auth",
    ):
        assert needle in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # no CDN


def test_models_and_tags(client):
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny"
    entry = client.get("/api/tags").json()["models"][0]
    assert entry["name"] == "tiny" and entry["details"]["family"] == "moondream" and entry["size"] > 0


# --- moondream routes -----------------------------------------------------------------------


def test_caption_reply_has_figures(client, state, png, url):
    expected = direct(state, lambda m: m.caption(png, settings=GREEDY)["caption"])
    body = client.post("/v1/caption", json={"image_url": url, "settings": GREEDY}).json()
    assert body["caption"] == expected and body["finish_reason"] == "length"
    figures = body["metrics"]
    assert figures["output_tokens"] == 8 and figures["input_tokens"] > 700
    assert figures["ttft_ms"] > 0 and figures["tokens_per_second"] > 0 and figures["batch_size"] == 1


def test_query_stream_events(client, state, png, url):
    expected = direct(state, lambda m: m.query(png, "Any colour?", settings=GREEDY)["answer"])
    reply = client.post(
        "/v1/query", json={"image_url": url, "question": "Any colour?", "stream": True, "settings": GREEDY}
    )
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply.text)
    assert all(e["completed"] is False for e in events[:-1]) and events[-1]["completed"] is True
    assert "".join(e.get("chunk", "") for e in events) == expected
    assert events[-1]["metrics"]["output_tokens"] == 8


def test_detect_and_point(client, state, png, url):
    limit = {"max_objects": 2}
    objects = client.post("/v1/detect", json={"image_url": url, "object": "tree", "settings": limit}).json()
    points = client.post("/v1/point", json={"image_url": url, "object": "tree", "settings": limit}).json()
    assert objects["objects"] == direct(state, lambda m: m.detect(png, "tree", settings=limit)["objects"])
    assert points["points"] == direct(state, lambda m: m.point(png, "tree", settings=limit)["points"])
    assert objects["metrics"]["count"] == len(objects["objects"])


def test_bare_base64_and_urlsafe_are_accepted(client, png):
    text = base64.b64encode(png).decode()
    assert client.post("/v1/caption", json={"image_url": text, "settings": GREEDY}).status_code == 200
    unpadded = base64.urlsafe_b64encode(png).decode().rstrip("=")
    assert client.post("/v1/caption", json={"image_url": unpadded, "settings": GREEDY}).status_code == 200


# --- openai and ollama routes ---------------------------------------------------------------


def test_chat_completions_raw(client, state, png, url):
    expected = direct(state, lambda m: m.query(png, "Hi?", settings=GREEDY)["answer"])
    messages = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Hi?"}]}
    ]
    body = client.post(
        "/v1/chat/completions", json={"messages": messages, "temperature": 0, "max_completion_tokens": 8}
    ).json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == expected
    assert body["usage"]["completion_tokens"] == 8 and body["metrics"]["output_tokens"] == 8
    events = sse_events(
        client.post(
            "/v1/chat/completions", json={"messages": messages, "temperature": 0, "max_tokens": 8, "stream": True}
        ).text
    )
    assert events[-1] == "[DONE]" and events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]) == expected


def test_ollama_generate_streams_ndjson_by_default(client, state, png):
    expected = direct(state, lambda m: m.query(png, "Hi?", settings=GREEDY)["answer"])
    image = base64.b64encode(png).decode()
    reply = client.post(
        "/api/generate",
        json={"model": "tiny", "prompt": "Hi?", "images": [image], "options": {"temperature": 0, "num_predict": 8}},
    )
    assert reply.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in reply.text.splitlines() if line]
    assert "".join(line["response"] for line in lines) == expected
    final = lines[-1]
    assert final["done"] is True and final["eval_count"] == 8
    for name in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[name], int)


def test_ollama_chat_and_load_request(client, state, png):
    image = base64.b64encode(png).decode()
    expected = direct(state, lambda m: m.caption(png, settings=GREEDY)["caption"])
    body = client.post(
        "/api/chat",
        json={
            "stream": False,
            "messages": [{"role": "user", "content": "", "images": [image]}],
            "options": {"temperature": 0, "num_predict": 8},
        },
    ).json()
    assert body["message"]["content"] == expected  # an image without text is captioned
    loaded = client.post("/api/generate", json={"model": "tiny", "stream": False}).json()
    assert loaded["done"] is True and loaded["done_reason"] == "load"


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, body, status, needle",
    [
        ("/v1/query", {"image_url": "data:image/jpeg;base64,@@@@", "question": "x"}, 400, "image_url"),
        (
            "/v1/query",
            {"image_url": "data:image/png;base64," + base64.b64encode(b"hello").decode(), "question": "x"},
            400,
            "image_url",
        ),
        ("/v1/query", {"image_url": "https://example.com/cat.jpg", "question": "x"}, 400, "image_url"),
        ("/v1/query", {"image_url": "data:image/png,notbase64", "question": "x"}, 400, "image_url"),
        ("/v1/caption", {}, 422, "image_url: Field required"),
        ("/v1/query", {"question": 5}, 422, "question"),
        ("/v1/query", {"question": "   "}, 422, "question"),
        ("/v1/query", {"question": "x", "stream": "sometimes"}, 422, "stream"),
        ("/v1/query", {"question": "x", "settings": {"max_tokens": 0}}, 422, "settings"),
        ("/v1/query", {"question": "x", "settings": {"temprature": 0}}, 422, "settings"),
        ("/v1/query", {"question": "x", "settings": "hot"}, 422, "settings"),
        ("/v1/caption", {"image_url": "", "length": "epic"}, 422, "length"),
        ("/v1/detect", {"image_url": "", "object": ""}, 400, "image_url"),
        ("/v1/chat/completions", {"messages": []}, 422, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 2}, 422, "n"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            422,
            "messages.0.content.0.type",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"},
            422,
            "max_tokens",
        ),
        ("/api/generate", {"prompt": "x", "images": ["%%%"]}, 400, "images.0"),
        ("/api/generate", {"prompt": "x", "options": {"num_predict": "lots"}}, 422, "num_predict"),
        ("/api/chat", {"messages": [{"role": "system", "content": "x"}]}, 422, "messages"),
    ],
)
def test_bad_requests_name_the_field(client, path, body, status, needle):
    reply = client.post(path, json=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    message = error["message"] if isinstance(error, dict) else error
    assert needle in message


def test_openai_errors_have_openai_shape(client):
    error = client.post("/v1/chat/completions", json={"messages": []}).json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == 422


def test_invalid_json_unknown_route_and_method(client):
    reply = client.post("/v1/query", content=b"{oops", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "invalid JSON" in reply.json()["error"]
    assert client.get("/v1/nothing").status_code == 404 and "error" in client.get("/v1/nothing").json()
    assert client.get("/v1/query").status_code == 405 and "error" in client.get("/v1/query").json()


def test_body_too_large(client):
    big = {"image_url": "data:image/png;base64," + "A" * (MAX_BODY + 10), "question": "x"}
    reply = client.post("/v1/query", json=big)
    assert reply.status_code == 413 and "error" in reply.json()

    def chunks():  # no content-length: counted while streaming in
        yield b'{"question": "x", "image_url": "'
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"A" * 65536
        yield b'"}'

    reply = client.post("/v1/query", content=chunks(), headers={"content-type": "application/json"})
    assert reply.status_code == 413


def test_auth(base):
    base = base + "/"
    body = {"question": "x", "settings": GREEDY}
    assert httpx.post(f"{base}v1/query", json=body).status_code == 401
    wrong = httpx.post(f"{base}v1/query", json=body, headers={"X-Moondream-Auth": "nope"})
    assert wrong.status_code == 401 and wrong.json() == {"error": "invalid API key"}
    assert httpx.post(f"{base}v1/query", json=body, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.post(f"{base}v1/query", json=body, headers={"Authorization": f"Basic {KEY}"}).status_code == 401
    for path in ("metrics", "v1/models", "api/tags"):
        assert httpx.get(f"{base}{path}").status_code == 401


def test_internal_errors_do_not_leak_and_the_server_keeps_serving(client, state, base, monkeypatch, url):
    def broken(requests):
        raise RuntimeError("secret internal detail")
        yield  # pragma: no cover

    monkeypatch.setattr(state.model.engine, "generate_stream", broken)
    reply = client.post("/v1/query", json={"image_url": url, "question": "x", "settings": GREEDY})
    assert reply.status_code == 500 and reply.json() == {"error": "internal server error"}
    streamed = client.post("/v1/query", json={"image_url": url, "question": "x", "stream": True, "settings": GREEDY})
    assert "secret" not in streamed.text and "internal server error" in streamed.text
    ollama = client.post("/api/generate", json={"prompt": "x", "options": {"num_predict": 4}})
    assert "secret" not in ollama.text and "Traceback" not in ollama.text
    monkeypatch.undo()
    assert client.post("/v1/query", json={"image_url": url, "question": "x", "settings": GREEDY}).status_code == 200
    assert httpx.get(f"{base}/health").json()["status"] == "ok"


# --- batching -------------------------------------------------------------------------------


def _wait_for_depth(state, depth, timeout=20.0):
    deadline = time.monotonic() + timeout
    while state.batcher.depth < depth:
        assert time.monotonic() < deadline, f"queue depth stuck at {state.batcher.depth}"
        time.sleep(0.01)


def _batch_histogram(client) -> tuple[int, float]:
    """(engine runs, rows decoded) from /metrics' moonlet_batch_size histogram."""
    values = dict(
        line.rsplit(" ", 1)
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("moonlet_batch_size_")
    )
    return int(values["moonlet_batch_size_count"]), float(values["moonlet_batch_size_sum"])


def _recording_engine_runs(monkeypatch, state) -> list[int]:
    """The number of rows of each engine run from now on (``Engine.generate_stream`` wrapped)."""
    runs: list[int] = []
    original = state.model.engine.generate_stream

    def recorded(requests, *args, **kwargs):
        runs.append(len(requests))
        return original(requests, *args, **kwargs)

    monkeypatch.setattr(state.model.engine, "generate_stream", recorded)
    return runs


def test_concurrent_requests_are_decoded_together(client, state, png, url, monkeypatch):
    """Queued requests are decoded as one engine run of all rows (no timing: the run is counted)."""
    settings = {"temperature": 0, "max_tokens": 40}
    questions = [f"Question number {i}?" for i in range(6)]
    expected = direct(state, lambda m: [m.query(png, q, settings=settings)["answer"] for q in questions])
    runs = _recording_engine_runs(monkeypatch, state)

    before = _batch_histogram(client)
    one_by_one = [
        client.post("/v1/query", json={"image_url": url, "question": q, "settings": settings}).json() for q in questions
    ]
    assert [r["answer"] for r in one_by_one] == expected and all(r["metrics"]["batch_size"] == 1 for r in one_by_one)
    assert runs == [1] * len(questions)
    after_sequential = _batch_histogram(client)
    assert (after_sequential[0] - before[0], after_sequential[1] - before[1]) == (len(questions), len(questions))

    gate = threading.Event()
    blocker = state.batcher.call(lambda m: gate.wait(30))  # hold the worker while the requests queue up

    def ask(question):
        return client.post("/v1/query", json={"image_url": url, "question": question, "settings": settings}).json()

    runs.clear()
    with ThreadPoolExecutor(len(questions)) as pool:
        futures = [pool.submit(ask, q) for q in questions]
        _wait_for_depth(state, len(questions))
        gate.set()
        together = [f.result(timeout=60) for f in futures]
    blocker.result(timeout=5)
    assert [r["answer"] for r in together] == expected
    assert all(r["metrics"]["batch_size"] == len(questions) for r in together)
    assert runs == [len(questions)]  # one engine run decoded all six rows
    after_batched = _batch_histogram(client)
    assert (after_batched[0] - after_sequential[0], after_batched[1] - after_sequential[1]) == (1, len(questions))


def test_queue_full_gives_503(state, url):
    from moonlet.server.app import create_app
    from moonlet.server.testing import running_server

    app = create_app(state.model, max_queue=1, name="tiny")
    with running_server(app) as base:
        batcher = app.state.moonlet.batcher
        gate = threading.Event()
        blocker = batcher.call(lambda m: gate.wait(30))
        deadline = time.monotonic() + 10
        while batcher.depth:  # the worker has picked the blocker up
            assert time.monotonic() < deadline
            time.sleep(0.01)
        filler = batcher.call(lambda m: None)  # fills the one queue slot
        try:
            reply = httpx.post(f"{base}/v1/query", json={"question": "x", "settings": GREEDY}, timeout=30)
            assert reply.status_code == 503 and "busy" in reply.json()["error"] and reply.headers["retry-after"] == "1"
        finally:
            gate.set()
        blocker.result(timeout=10)
        filler.result(timeout=10)
        assert httpx.post(f"{base}/v1/query", json={"question": "x", "settings": GREEDY}, timeout=30).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_client_hanging_up_frees_the_worker(client, state, monkeypatch, stream):
    """A long generation whose client goes away stops early; the next request is decoded on its own."""
    # 2000 tokens whose text has no spaces, so a stream sends nothing before the end: the hang-up must be
    # noticed from the connection, not from a failed write. Left alone it decodes all 2000 (measured: no
    # stop id comes), so fewer steps mean the hang-up stopped it
    long_tokens = 2000
    steps, ended = [], threading.Event()
    original = state.model.engine.generate_stream

    def counted(requests, *args, **kwargs):
        try:
            for step in original(requests, *args, **kwargs):
                steps.append(len(requests))
                yield step
        finally:
            ended.set()

    monkeypatch.setattr(state.model.engine, "generate_stream", counted)
    body = {
        "question": "Tell me everything.",
        "stream": stream,
        "settings": {"temperature": 0, "max_tokens": long_tokens},
    }
    with pytest.raises(httpx.ReadTimeout):
        with client.stream("POST", "/v1/query", json=body, timeout=0.5) as reply:  # the client gives up
            for _ in reply.iter_bytes():
                pass
    assert ended.wait(60), "the abandoned generation never ended"
    assert 0 < len(steps) < long_tokens - 1  # it stopped, not ran to max_tokens
    reply = client.post("/v1/query", json={"question": "Next?", "settings": GREEDY})
    assert reply.status_code == 200 and reply.json()["metrics"]["batch_size"] == 1


# --- metrics --------------------------------------------------------------------------------


def test_metrics_exposition(client, url):
    client.post("/v1/caption", json={"image_url": url, "settings": GREEDY})
    client.post("/v1/caption", json={})
    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    assert 'moonlet_requests_total{route="/v1/caption",status="200"}' in text
    assert 'moonlet_requests_total{route="/v1/caption",status="422"}' in text
    assert 'moonlet_request_duration_seconds_bucket{route="/v1/caption",le="+Inf"}' in text
    assert "# TYPE moonlet_request_duration_seconds histogram" in text
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert int(values["moonlet_generated_tokens_total"]) > 0
    assert int(values["moonlet_queue_depth"]) == 0
    assert int(values["moonlet_time_to_first_token_seconds_count"]) > 0
