"""Run an app with uvicorn on a free loopback port in a background thread (tests, notebooks), and
queue jobs so that they decode in one batch."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def running_server(app, host: str = "127.0.0.1", startup_timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL such as ``http://127.0.0.1:PORT``."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="moonlet-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(startup_timeout)
        sock.close()


async def decode_together(batcher, jobs: list[tuple]) -> list:
    """Submit text jobs ``(prompt, settings, image, options)`` while the worker is held, so that they
    are all waiting when it takes its next batch; returns each job's ``TextResult`` in order."""
    release = threading.Event()
    held = batcher.call(lambda model: release.wait(60))
    try:
        submitted = [batcher.submit_text(p, s, image=i, options=o) for p, s, i, o in jobs]
    finally:
        release.set()
    held.result(timeout=60)
    results = []
    for job in submitted:
        while (event := await job.channel.get())[0] != "done":
            if event[0] == "error":
                raise event[1]
        results.append(event[1])
    return results
