"""HTTP server for moonlet: Moondream-, OpenAI- and Ollama-compatible routes and a web page.

Needs the ``serve`` extra (FastAPI and uvicorn). Start it with ``moonlet serve`` or build the
app yourself with ``create_app(moonlet.load(...))``.
"""

from __future__ import annotations


def create_app(*args, **kwargs):
    """See ``moonlet.server.app.create_app`` (imported lazily so FastAPI stays optional)."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app"]
