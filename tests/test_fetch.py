"""Opt-in image URL fetching: only http(s), only public addresses (checked, then pinned), size
capped, redirects checked again. A loopback HTTP server plays the remote host; the address
check is relaxed for 127.0.0.1 only where a test says so."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx  # noqa: F401
import pytest
from PIL import Image  # noqa: E402

from moonlet.server import fetch as fetch_module  # noqa: E402
from moonlet.server.errors import ApiError  # noqa: E402
from moonlet.server.fetch import FetchError, fetch  # noqa: E402
from moonlet.server.inputs import decode_image  # noqa: E402
from moonlet.server.limits import ServerLimits  # noqa: E402


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (7, 5), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


class Handler(BaseHTTPRequestHandler):
    seen_hosts: list[str] = []

    def do_GET(self):  # noqa: N802
        Handler.seen_hosts.append(self.headers.get("Host"))
        if self.path == "/cat.png":
            self._send(200, PNG, {"Content-Type": "image/png"})
        elif self.path == "/big":
            self._send(200, b"x" * 5000)
        elif self.path == "/big-undeclared":
            self.send_response(200)
            self.end_headers()  # no Content-Length: the body runs until the connection closes
            self.wfile.write(b"x" * 5000)
            self.close_connection = True
        elif self.path == "/to-cat":
            self._send(302, b"", {"Location": "/cat.png"})
        elif self.path == "/to-private":
            self._send(302, b"", {"Location": "http://10.1.2.3/cat.png"})
        elif self.path == "/loop":
            self._send(302, b"", {"Location": "/loop"})
        else:
            self._send(404, b"no")

    def _send(self, status, body, headers=None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def loopback_is_public(monkeypatch):
    """Treat 127.0.0.1 (only) as a public address, so the loopback server can stand in for one."""
    real = fetch_module.is_public
    monkeypatch.setattr(fetch_module, "is_public", lambda address: address == "127.0.0.1" or real(address))


def test_private_and_local_addresses_are_refused(origin):
    for url in (
        origin + "/cat.png",
        "http://localhost/x.png",
        "http://10.0.0.1/x.png",
        "http://169.254.169.254/latest",
        "http://[::1]/x.png",
        "http://192.168.1.1/x.png",
        "http://0.0.0.0/x.png",
    ):
        with pytest.raises(FetchError, match="private or local"):
            fetch(url, 10_000, 2)


def test_names_resolving_to_private_addresses_are_refused_before_connecting(monkeypatch):
    monkeypatch.setattr(fetch_module, "resolve", lambda host, port: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(FetchError, match="private or local.*10.0.0.7"):
        fetch("http://images.example/cat.png", 10_000, 2)


@pytest.mark.parametrize("url", ["ftp://example.com/x.png", "file:///etc/passwd", "gopher://x/", "http:///x.png"])
def test_only_http_and_https_with_a_host(url):
    with pytest.raises(FetchError):
        fetch(url, 10_000, 2)


def test_fetches_and_pins_the_checked_address(origin, loopback_is_public, monkeypatch):
    port = origin.rsplit(":", 1)[1]
    # The name resolves (once, when checked) to the loopback server; the request must go to that
    # address while still naming the host it asked for.
    monkeypatch.setattr(fetch_module, "resolve", lambda host, p: ["127.0.0.1"])
    Handler.seen_hosts.clear()
    assert fetch(f"http://images.example:{port}/cat.png", 10_000, 5) == PNG
    assert Handler.seen_hosts == [f"images.example:{port}"]


def test_size_cap_declared_and_streamed(origin, loopback_is_public):
    with pytest.raises(FetchError, match="larger than 1000 bytes") as caught:
        fetch(origin + "/big", 1000, 5)
    assert caught.value.status == 413
    with pytest.raises(FetchError, match="larger than 1000 bytes"):
        fetch(origin + "/big-undeclared", 1000, 5)
    assert len(fetch(origin + "/big", 5000, 5)) == 5000


def test_redirects_are_followed_and_checked_again(origin, loopback_is_public):
    assert fetch(origin + "/to-cat", 10_000, 5) == PNG
    with pytest.raises(FetchError, match="private or local"):
        fetch(origin + "/to-private", 10_000, 5)
    with pytest.raises(FetchError, match="redirects more than"):
        fetch(origin + "/loop", 10_000, 5)
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(origin + "/missing", 10_000, 5)


def test_server_inputs_fetch_only_when_allowed(origin, loopback_is_public):
    with pytest.raises(ApiError, match="--allow-image-urls"):
        decode_image(origin + "/cat.png", "image_url")
    allowed = ServerLimits(allow_image_urls=True, image_url_max_bytes=100_000)
    assert decode_image(origin + "/cat.png", "image_url", allowed).size == (7, 5)
    with pytest.raises(ApiError, match="image_url: the image at the URL is larger") as caught:
        decode_image(origin + "/big", "image_url", ServerLimits(allow_image_urls=True, image_url_max_bytes=100))
    assert caught.value.status == 413
