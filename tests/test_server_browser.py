"""The web page in headless Chromium (Playwright): caption, ask, detect, point, webcam, auth.

Skipped without Playwright or Chromium (.ci/run installs both).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest



ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # test artifacts (git-ignored)
import fastapi  # noqa: F401
import uvicorn  # noqa: F401
from playwright import sync_api

from conftest import GOLDEN_MODEL as MODEL_DIR  # noqa: E402
KEY = "browser-key"
CHROMIUM = os.environ.get("MOONLET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
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
def browser():
    if not CHROMIUM:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, base, tmp_path):
    context = browser.new_context(permissions=["camera"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base + "/")
    page.fill("#apiKey", KEY)
    page.dispatch_event("#apiKey", "change")
    page.fill("#maxTokens", "6")
    page.fill("#temperature", "0")
    yield page
    context.close()
    assert not errors, errors


def _picture(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "picture.png"
    Image.new("RGB", (80, 60), (40, 90, 200)).save(path)
    return path


def _last_entry(page, timeout=30_000):
    page.wait_for_function(
        "() => { const e = document.querySelector('#log .entry'); return e && (e.querySelector('.figures').textContent || e.classList.contains('error')); }",
        timeout=timeout,
    )
    entry = page.query_selector("#log .entry")
    return entry.query_selector(".what").text_content(), entry.query_selector(".text").text_content(), entry.get_attribute("class")


def _marked_pixels(page) -> int:
    return page.evaluate(
        "() => { const o = document.getElementById('overlay'); if (!o.width || !o.height) return 0;"
        " const d = o.getContext('2d').getImageData(0, 0, o.width, o.height).data; let n = 0;"
        " for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"
    )


def test_status_caption_and_question(page, tmp_path):
    page.wait_for_function("() => document.getElementById('status').textContent.includes('tiny')")
    page.set_input_files("#file", str(_picture(tmp_path)))
    page.wait_for_selector("#picture:not(.hidden)")
    page.click("#captionBtn")
    what, text, _ = _last_entry(page)
    assert what.startswith("caption") and text
    page.fill("#question", "What colour is it?")
    page.press("#question", "Enter")
    page.wait_for_function("() => document.querySelector('#log .entry .what').textContent.startsWith('Q:')")
    what, text, _ = _last_entry(page)
    assert what == "Q: What colour is it?" and text


def test_detect_and_point_draw_marks(page, tmp_path):
    page.set_input_files("#file", str(_picture(tmp_path)))
    page.wait_for_selector("#picture:not(.hidden)")
    page.fill("#object", "square")
    page.click("#detectBtn")
    what, text, _ = _last_entry(page)
    assert what == "detect: square"
    assert text.startswith("box (") and _marked_pixels(page) > 0  # the golden model always finds boxes
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-detect.png"), full_page=True)
    page.click("#clearBtn")
    assert _marked_pixels(page) == 0
    page.click("#pointBtn")
    page.wait_for_function("() => document.querySelector('#log .entry .what').textContent.startsWith('point')")
    what, text, _ = _last_entry(page)
    if text != "nothing found":
        assert text.startswith("point (") and _marked_pixels(page) > 0


def test_webcam_describes_and_answers(page):
    page.click("#tabCamera")
    page.select_option("#interval", "2000")
    page.click("#camStart")
    page.wait_for_function("() => document.getElementById('video').videoWidth > 0", timeout=20_000)
    page.wait_for_function("() => document.getElementById('live').textContent.length > 0", timeout=30_000)
    assert not page.text_content("#live").startswith("Error")
    page.fill("#question", "What do you see?")
    page.click("#askBtn")
    page.wait_for_function("() => document.querySelector('#log .entry .what').textContent.startsWith('Q:')")
    what, text, classes = _last_entry(page)
    assert "error" not in classes and text
    page.click("#camStop")
    assert page.evaluate("() => document.getElementById('video').srcObject") is None


def test_wrong_key_is_reported(page, tmp_path):
    page.fill("#apiKey", "wrong")
    page.dispatch_event("#apiKey", "change")
    page.set_input_files("#file", str(_picture(tmp_path)))
    page.wait_for_selector("#picture:not(.hidden)")
    page.click("#captionBtn")
    _, text, classes = _last_entry(page)
    assert "error" in classes and "invalid API key" in text
