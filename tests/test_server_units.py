"""Server pieces without a model: image inputs, metrics text, auth headers, figures, the CLI."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import fastapi  # noqa: F401
import pytest
from PIL import Image  # noqa: E402

from moonlet.generation.engine import LENGTH, STOP, Step  # noqa: E402
from moonlet.generation.sampling import SamplingSettings  # noqa: E402
from moonlet.server.batcher import Batcher, Figures  # noqa: E402
from moonlet.server.errors import ApiError, error_body  # noqa: E402
from moonlet.server.inputs import decode_base64, decode_image  # noqa: E402
from moonlet.server.metrics import Metrics  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
from conftest import GOLDEN_MODEL as MODEL_DIR  # noqa: E402


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (5, 4), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decode_base64_forms():
    raw = _png()
    text = base64.b64encode(raw).decode()
    assert decode_base64("data:image/png;base64," + text, "f") == raw
    assert decode_base64(text, "f") == raw
    assert decode_base64(" " + text[:10] + "\n" + text[10:] + " ", "f") == raw
    assert decode_base64(base64.urlsafe_b64encode(raw).decode().rstrip("="), "f") == raw
    assert decode_image(text, "f").size == (5, 4)


@pytest.mark.parametrize(
    "value, status, needle",
    [
        ("data:image/png;base64", 400, "no comma"),
        ("data:image/png,abc", 400, "base64 encoded"),
        ("http://example.com/x.png", 400, "--allow-image-urls"),
        ("data:image/png;base64,", 400, "empty"),
        ("a$b%", 400, "not valid base64"),
        (base64.b64encode(b"plain text").decode(), 400, "cannot decode image"),
        (42, 422, "expected a string"),
    ],
)
def test_bad_image_inputs(value, status, needle):
    with pytest.raises(ApiError) as caught:
        decode_image(value, "image_url")
    assert caught.value.status == status and needle in caught.value.message
    assert caught.value.message.startswith("image_url: ") and "0x" not in caught.value.message


def test_error_bodies_per_protocol():
    assert error_body("/v1/query", 400, "bad") == {"error": "bad"}
    assert error_body("/api/chat", 400, "bad") == {"error": "bad"}
    openai = error_body("/v1/chat/completions", 401, "no key")["error"]
    assert openai["message"] == "no key" and openai["type"] == "authentication_error"


def test_metrics_text_format():
    metrics = Metrics('some "model"\n', queue_depth=lambda: 3)
    metrics.request_started()
    metrics.request_finished("/v1/query", 200, 0.2)
    metrics.request_started()
    metrics.request_finished("/v1/query", 422, 0.001)
    metrics.text_finished(700, 12, 0.05)
    metrics.batch_run(3)
    text = metrics.render()
    assert text.endswith("\n")
    assert 'moonlet_info{model="some \\"model\\"\\n"} 1' in text
    assert 'moonlet_requests_total{route="/v1/query",status="200"} 1' in text
    assert 'moonlet_request_duration_seconds_bucket{route="/v1/query",le="0.25"} 2' in text
    assert 'moonlet_request_duration_seconds_bucket{route="/v1/query",le="0.1"} 1' in text
    assert 'moonlet_request_duration_seconds_count{route="/v1/query"} 2' in text
    assert "moonlet_queue_depth 3" in text and "moonlet_requests_in_flight 0" in text
    assert "moonlet_generated_tokens_total 12" in text and "moonlet_prompt_tokens_total 700" in text
    assert 'moonlet_batch_size_bucket{le="2.0"} 0' in text and 'moonlet_batch_size_bucket{le="4.0"} 1' in text
    for line in text.splitlines():  # every sample line is "name{labels} value"
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_figures():
    figures = Figures(created=10.0, started=10.5, first_token=11.0, finished=12.0, input_tokens=5, output_tokens=11)
    values = figures.as_dict()
    assert values["queue_ms"] == 500 and values["ttft_ms"] == 1000 and values["prefill_ms"] == 500
    assert values["decode_ms"] == 1000 and values["total_ms"] == 2000 and values["tokens_per_second"] == 10
    assert Figures(created=1.0).as_dict()["ttft_ms"] is None


class ScriptedEngine:
    """An engine that yields fixed steps, whatever it is asked."""

    def __init__(self, steps):
        self.steps = steps

    def check_fits(self, prefix_length, prompt_length):
        pass

    def generate_stream(self, requests):
        assert len(requests) == 2, "both jobs decode in one batch"
        yield from self.steps


def test_batcher_reports_the_engines_finish_reasons():
    # Row 1 ends well before max_tokens with "length": the batcher takes the engine's word, not a count.
    steps = [Step([5, 6], [None, None]), Step([None, 7], [STOP, LENGTH])]
    model = SimpleNamespace(
        engine=ScriptedEngine(steps),
        tokenizer=SimpleNamespace(decode=lambda ids: " ".join(map(str, ids))),
        text_prefix=lambda: SimpleNamespace(length=1),
        text_request=lambda prefix, prompt, settings: SimpleNamespace(settings=settings, constraint=None),
    )

    async def result(job):
        while True:
            kind, value = await job.channel.get()
            if kind == "done":
                return value

    async def run():
        batcher = Batcher(model, max_batch=2, batch_window_s=1.0)
        batcher.start()
        try:
            jobs = [batcher.submit_text([1], SamplingSettings(max_tokens=10, temperature=0)) for _ in range(2)]
            return [await asyncio.wait_for(result(job), 10) for job in jobs]
        finally:
            batcher.stop()

    first, second = asyncio.run(run())
    assert (first.text, first.finish_reason) == ("5", STOP)
    assert (second.text, second.finish_reason) == ("6 7", LENGTH)


def test_presented_key():
    from starlette.requests import Request

    from moonlet.server.auth import presented_key

    def request(*headers):
        return Request({"type": "http", "headers": [(k.encode(), v.encode()) for k, v in headers]})

    assert presented_key(request(("x-moondream-auth", "k1"))) == "k1"
    assert presented_key(request(("authorization", "Bearer k2"))) == "k2"
    assert presented_key(request(("authorization", "bearer  k3 "))) == "k3"
    assert presented_key(request(("authorization", "Basic k4"))) is None
    assert presented_key(request()) is None


def test_serve_parser_defaults():
    from moonlet.server.cli import add_serve_parser

    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve"])
    assert (args.host, args.port, args.api_key, args.max_batch) == ("127.0.0.1", 2020, None, 8)
    args = parser.parse_args(
        ["serve", "--model", "m", "--device", "cpu", "--dtype", "float32", "--revision", "r", "--port", "9"]
    )
    assert (args.model, args.device, args.dtype, args.revision, args.port) == ("m", "cpu", "float32", "r", 9)


def test_run_serve_end_to_end():
    """The serve command in a subprocess: it comes up, enforces the env key, stops on Ctrl-C."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "import argparse, sys; from moonlet.server.cli import add_serve_parser, run_serve\n"
        "p = argparse.ArgumentParser(); add_serve_parser(p.add_subparsers(dest='command'))\n"
        "sys.exit(run_serve(p.parse_args(sys.argv[1:])))\n"
    )
    env = {**os.environ, "MOONLET_API_KEY": "env-key"}
    command = [sys.executable, "-c", code, "serve", "--model", str(MODEL_DIR), "--device", "cpu", "--port", str(port)]
    command += ["--log-level", "warning"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        assert health.json()["model"] == "model"
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
        keyed = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"X-Moondream-Auth": "env-key"})
        assert keyed.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in err


@pytest.mark.parametrize(
    "flag, value",
    [("--max-queue", "0"), ("--max-concurrent", "-1"), ("--request-timeout", "0"), ("--max-body-mb", "0")],
)
def test_serve_refuses_limits_out_of_range_by_flag(flag, value, capsys):
    from moonlet.server.cli import add_serve_parser, run_serve

    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    assert run_serve(parser.parse_args(["serve", flag, value])) == 2
    assert f"{flag} must be positive" in capsys.readouterr().err


def test_limit_errors_name_their_field(capsys):
    from moonlet.server.cli import add_serve_parser, run_serve
    from moonlet.server.limits import LimitError, ServerLimits

    with pytest.raises(LimitError) as caught:
        ServerLimits(batch_window_ms=-1)
    assert (caught.value.field, caught.value.problem) == ("batch_window_ms", "must not be negative, got -1")
    assert str(caught.value) == "batch_window_ms must not be negative, got -1"
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    assert run_serve(parser.parse_args(["serve", "--image-url-max-mb", "nan"])) == 2
    assert "--image-url-max-mb must be a finite number, got nan" in capsys.readouterr().err
