"""The web page in headless Chromium (Playwright): caption, ask, detect, point, webcam, auth, and on a
grounded server reasoning and gaze. Each request the page sends is captured and sent again straight to
the API: the page must show exactly what the API returns for it.

Skipped without Playwright or Chromium (.ci/run installs both).
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import httpx
import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # test artifacts (git-ignored)
import fastapi  # noqa: F401
import uvicorn  # noqa: F401
from conftest import GOLDEN_GROUNDED
from conftest import GOLDEN_MODEL as MODEL_DIR  # noqa: E402
from playwright import sync_api
from test_golden_grounded import EXPECTED as GROUNDED_CASES
from test_golden_grounded import raise_bias

ASTRONAUT = GOLDEN_GROUNDED / "cases" / "astronaut.png"

KEY = "browser-key"
CHROMIUM = os.environ.get("MOONLET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


@pytest.fixture(scope="module")
def base():
    import moonlet
    from moonlet.server.app import create_app
    from moonlet.server.testing import running_server

    app = create_app(moonlet.load(MODEL_DIR, device="cpu"), api_key=KEY, name="tiny")
    with running_server(app) as url:
        yield url


@pytest.fixture(scope="module")
def grounded_base():
    """md2-tiny with md2-tiny-grounded's raised bias, so that its reasoning grounds (as in test_server_grounded)."""
    import moonlet
    from moonlet.server.app import create_app
    from moonlet.server.testing import running_server

    model = moonlet.load(MODEL_DIR, device="cpu", dtype="float32")
    raise_bias(model, GROUNDED_CASES["lm_head_bias_added"])
    with running_server(create_app(model, api_key=KEY, name="tiny-grounded")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield instance
        instance.close()


@contextmanager
def _opened(browser, url: str, max_tokens: int):
    """The page at ``url`` with the key typed in; no script error may happen on it."""
    context = browser.new_context(permissions=["camera"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/")
    page.fill("#apiKey", KEY)
    page.dispatch_event("#apiKey", "change")
    page.fill("#maxTokens", str(max_tokens))
    page.fill("#temperature", "0")
    try:
        yield page
    finally:
        context.close()
    assert not errors, errors


@pytest.fixture
def page(browser, base):
    with _opened(browser, base, 6) as opened:
        yield opened


@pytest.fixture
def grounded_page(browser, grounded_base):
    with _opened(browser, grounded_base, GROUNDED_CASES["sampling"]["max_tokens"]) as opened:
        yield opened


def _picture(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "picture.png"
    Image.new("RGB", (80, 60), (40, 90, 200)).save(path)
    return path


def _last_entry(page, timeout=30_000):
    page.wait_for_function(
        "() => { const e = document.querySelector('#log .entry');"
        " return e && (e.querySelector('.figures').textContent || e.classList.contains('error')); }",
        timeout=timeout,
    )
    entry = page.query_selector("#log .entry")
    parts = (entry.query_selector(".what"), entry.query_selector(".text"))
    return parts[0].text_content(), parts[1].text_content(), entry.get_attribute("class")


def _marked_pixels(page) -> int:
    return page.evaluate(
        "() => { const o = document.getElementById('overlay'); if (!o.width || !o.height) return 0;"
        " const d = o.getContext('2d').getImageData(0, 0, o.width, o.height).data; let n = 0;"
        " for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"
    )


def _sent(page, path: str, action):
    """Run ``action`` and return the request the page POSTed to ``path`` (its exact body and key)."""
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith(path)) as sent:
        action()
    return sent.value


def _replayed(base: str, request) -> httpx.Response:
    """The same request sent straight to the API."""
    headers = {"content-type": "application/json"}
    key = request.headers.get("x-moondream-auth")
    if key is not None:
        headers["X-Moondream-Auth"] = key
    return httpx.post(
        base + request.url.removeprefix(base), content=request.post_data_buffer, headers=headers, timeout=60
    )


def _events(reply: httpx.Response) -> list[dict]:
    """The events of a completed SSE reply."""
    assert reply.status_code == 200, reply.text
    events = [json.loads(line[len("data: ") :]) for line in reply.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["completed"] and "error" not in events[-1], events[-1]
    return events


def _streamed_text(reply: httpx.Response) -> str:
    """The text of an SSE reply: its chunks joined, as the page joins them."""
    return "".join(e["chunk"] for e in _events(reply) if isinstance(e.get("chunk"), str))


def _fixed2(value: float) -> str:
    """JavaScript's ``toFixed(2)``: the exact binary value rounded, halves away from zero."""
    return str(Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _located_text(skill: str, result: dict) -> str:
    """What the page prints for a detect/point reply."""
    if skill == "detect":
        corners = [[_fixed2(b[k]) for k in ("x_min", "y_min", "x_max", "y_max")] for b in result["objects"]]
        lines = [f"box ({x0}, {y0}) – ({x1}, {y1})" for x0, y0, x1, y1 in corners]
    else:
        lines = [f"point ({_fixed2(p['x'])}, {_fixed2(p['y'])})" for p in result["points"]]
    return "\n".join(lines) if lines else "nothing found"


def _open_picture(page, tmp_path, path: Path | None = None):
    page.set_input_files("#file", str(path or _picture(tmp_path)))
    page.wait_for_selector("#picture:not(.hidden)")


def _marks(page) -> list[dict] | None:
    """What the page says it drew over the image (the overlay's data-marks), normalised."""
    marks = page.get_attribute("#overlay", "data-marks")
    return None if marks is None else json.loads(marks)


def _painted_at(page, x: float, y: float) -> bool:
    """Whether the overlay has paint at the normalised point (x, y)."""
    return page.evaluate(
        "([x, y]) => { const o = document.getElementById('overlay');"
        " const px = Math.min(o.width - 1, Math.floor(x * o.width));"
        " const py = Math.min(o.height - 1, Math.floor(y * o.height));"
        " return o.getContext('2d').getImageData(px, py, 1, 1).data[3] > 0; }",
        [x, y],
    )


def test_status_caption_and_question(page, base, tmp_path):
    page.wait_for_function("() => document.getElementById('status').textContent.includes('tiny')")
    health = httpx.get(base + "/health").json()
    expected_status = f"{health['model']} · {health['device']} · {health['dtype']} · {health['status']}"
    assert page.text_content("#status") == expected_status
    _open_picture(page, tmp_path)
    request = _sent(page, "/v1/caption", lambda: page.click("#captionBtn"))
    sent = json.loads(request.post_data)
    assert sent["settings"] == {"max_tokens": 6, "temperature": 0} and sent["stream"] is True
    what, text, _ = _last_entry(page)
    assert what == "caption (normal)" and text == _streamed_text(_replayed(base, request)) != ""
    page.fill("#question", "What colour is it?")
    request = _sent(page, "/v1/query", lambda: page.press("#question", "Enter"))
    sent = json.loads(request.post_data)
    assert sent["question"] == "What colour is it?" and "reasoning" not in sent  # the toggle starts off
    page.wait_for_function("() => document.querySelector('#log .entry .what').textContent.startsWith('Q:')")
    what, text, _ = _last_entry(page)
    assert what == "Q: What colour is it?" and text == _streamed_text(_replayed(base, request)) != ""


def test_detect_and_point_show_what_the_api_returns(page, base, tmp_path):
    _open_picture(page, tmp_path)
    page.fill("#object", "square")
    request = _sent(page, "/v1/detect", lambda: page.click("#detectBtn"))
    what, text, _ = _last_entry(page)
    result = _replayed(base, request).json()
    assert what == "detect: square" and result["objects"]  # the golden model finds boxes here
    assert text == _located_text("detect", result) and _marked_pixels(page) > 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-detect.png"), full_page=True)
    page.click("#clearBtn")
    assert _marked_pixels(page) == 0
    request = _sent(page, "/v1/point", lambda: page.click("#pointBtn"))
    page.wait_for_function("() => document.querySelector('#log .entry .what').textContent.startsWith('point')")
    what, text, _ = _last_entry(page)
    result = _replayed(base, request).json()
    assert what == "point: square" and text == _located_text("point", result)
    assert (_marked_pixels(page) > 0) == bool(result["points"])


def test_webcam_describes_and_answers(page, base):
    page.click("#tabCamera")
    page.select_option("#interval", "2000")
    request = _sent(page, "/v1/caption", lambda: page.click("#camStart"))  # the first live caption, after 2 s
    page.select_option("#interval", "0")  # and the last: no later frame replaces its text
    page.wait_for_function("() => document.getElementById('video').videoWidth > 0", timeout=20_000)
    assert json.loads(request.post_data)["length"] == "short"
    live = _streamed_text(_replayed(base, request))
    page.wait_for_function("(want) => document.getElementById('live').textContent === want", arg=live, timeout=30_000)
    page.fill("#question", "What do you see?")
    request = _sent(page, "/v1/query", lambda: page.click("#askBtn"))
    page.wait_for_function("() => document.querySelector('#log .entry .what').textContent.startsWith('Q:')")
    what, text, classes = _last_entry(page)
    assert "error" not in classes and what == "Q: What do you see?"
    assert text == _streamed_text(_replayed(base, request)) != ""
    page.click("#camStop")
    assert page.evaluate("() => document.getElementById('video').srcObject") is None


def test_wrong_key_is_reported(page, base, tmp_path):
    page.fill("#apiKey", "wrong")
    page.dispatch_event("#apiKey", "change")
    _open_picture(page, tmp_path)
    request = _sent(page, "/v1/caption", lambda: page.click("#captionBtn"))
    _, text, classes = _last_entry(page)
    reply = _replayed(base, request)
    assert reply.status_code == 401 and request.headers["x-moondream-auth"] == "wrong"
    assert "error" in classes and text == "Error: " + reply.json()["error"]
    assert "invalid API key" in text


def test_fixed2_rounds_as_javascript_does():
    # what Chromium's and node's toFixed(2) print: an exact half rounds away from zero (0.125), a double
    # just below a half rounds down (1.005, 2.675), a small negative keeps its sign
    values = (0.125, 1.005, -0.125, 0.0048828125, -0.021194, -0.001, 0.375, 2.675)
    assert [_fixed2(v) for v in values] == ["0.13", "1.00", "-0.13", "0.00", "-0.02", "-0.00", "0.38", "2.67"]


def test_reasoning_shows_the_api_reasoning_and_draws_its_grounding(grounded_page, grounded_base, tmp_path):
    page = grounded_page
    _open_picture(page, tmp_path, ASTRONAUT)
    page.check("#reasoning")
    page.fill("#question", "What is in this image?")
    request = _sent(page, "/v1/query", lambda: page.click("#askBtn"))
    sent = json.loads(request.post_data)
    assert sent["reasoning"] is True and sent["stream"] is True and sent["question"] == "What is in this image?"
    what, text, classes = _last_entry(page)
    events = _events(_replayed(grounded_base, request))
    reasoning = events[0]["reasoning"]  # the server sends it in the stream's first event
    grounding = reasoning["grounding"]
    assert grounding and all(g["points"] for g in grounding)  # the raised bias grounds the astronaut's reasoning
    assert "error" not in classes and what == "Q: What is in this image?"
    assert text == "".join(e.get("chunk", "") for e in events) != ""
    assert page.text_content("#log .entry .reasoning") == reasoning["text"] != ""
    spans = page.eval_on_selector_all("#log .entry .reasoning mark", "marks => marks.map((m) => m.textContent)")
    assert spans == [reasoning["text"][g["start_idx"] : g["end_idx"]] for g in grounding]
    points = [{"kind": "dot", "x": x, "y": y} for g in grounding for x, y in g["points"]]
    assert _marks(page) == points
    assert all(_painted_at(page, p["x"], p["y"]) for p in points)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-reasoning.png"))  # full_page would resize, clearing the marks


def _click_picture(page, x: float, y: float):
    """Click the picture at the normalised (x, y); returns the pixel fractions clicked and the canvas size."""
    width, height = page.eval_on_selector("#picture", "c => [c.clientWidth, c.clientHeight]")
    position = {"x": round(x * width), "y": round(y * height)}
    page.click("#picture", position=position)
    return (position["x"] / width, position["y"] / height), (width, height)


def test_gaze_mode_draws_an_arrow_to_the_api_gaze(grounded_page, grounded_base, tmp_path):
    page = grounded_page
    _open_picture(page, tmp_path, ASTRONAUT)
    page.check("#gazeMode")
    clicked = {}
    request = _sent(page, "/v1/gaze", lambda: clicked.update(zip(("at", "size"), _click_picture(page, 0.3, 0.4))))
    eye = json.loads(request.post_data)["eye"]
    for sent, at, side in zip(eye, clicked["at"], clicked["size"]):
        assert abs(sent - at) <= 1 / side  # the clicked pixel, normalised
    what, text, classes = _last_entry(page)
    gaze = _replayed(grounded_base, request).json()["gaze"]
    assert gaze is not None  # the golden model finds a gaze on the astronaut
    assert "error" not in classes and what == f"gaze from ({_fixed2(eye[0])}, {_fixed2(eye[1])})"
    assert text == f"looks at ({_fixed2(gaze['x'])}, {_fixed2(gaze['y'])})"
    start = {"x": eye[0], "y": eye[1]}
    assert _marks(page) == [{"kind": "eye", **start}, {"kind": "arrow", "from": start, "to": gaze}]
    middle = ((eye[0] + gaze["x"]) / 2, (eye[1] + gaze["y"]) / 2)
    assert _painted_at(page, gaze["x"], gaze["y"]) and _painted_at(page, *middle)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-gaze.png"))


def test_gaze_mode_says_when_no_gaze_is_found(grounded_page, tmp_path):
    page = grounded_page

    def without_gaze(route):  # the golden model always finds one: the API's real reply, its gaze set to null
        reply = route.fetch()
        route.fulfill(response=reply, json={**reply.json(), "gaze": None})

    page.route("**/v1/gaze", without_gaze)
    _open_picture(page, tmp_path, ASTRONAUT)
    page.click("#picture")  # gaze mode off: a click asks nothing
    page.check("#gazeMode")
    request = _sent(page, "/v1/gaze", lambda: _click_picture(page, 0.6, 0.5))
    eye = json.loads(request.post_data)["eye"]
    what, text, classes = _last_entry(page)
    assert "error" not in classes and text == "no gaze found"
    assert page.eval_on_selector_all("#log .entry", "entries => entries.length") == 1
    assert _marks(page) == [{"kind": "eye", "x": eye[0], "y": eye[1]}]
