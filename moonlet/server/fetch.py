"""Fetching an image from an http(s) URL for a request, when the server allows it.

Off unless ``--allow-image-urls``. Then: only http and https; the host name is resolved once
and every address must be public (no loopback, private, link-local, reserved or multicast
ranges), and the connection goes to that checked address (so a second DNS answer cannot
redirect it); redirects are followed a few times, each checked the same way; the body is
capped at ``max_bytes`` whether or not the server declares its length.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import httpx

MAX_REDIRECTS = 3


class FetchError(ValueError):
    """The URL is not allowed or its image could not be fetched; ``status`` is the HTTP reply to give."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def is_public(address: str) -> bool:
    return ipaddress.ip_address(address).is_global


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def checked_address(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, address) for an allowed URL; FetchError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"only http and https image URLs are fetched, not {parts.scheme or 'no scheme'!r}")
    if not parts.hostname:
        raise FetchError("the image URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError("the image URL has an invalid port") from None
    addresses = resolve(parts.hostname, port)
    private = [a for a in addresses if not is_public(a)]
    if private or not addresses:
        found = private[0] if private else "unresolved"
        raise FetchError(f"image URLs on private or local addresses are not fetched ({parts.hostname} is {found})")
    return parts.scheme, parts.hostname, port, addresses[0]


def fetch(url: str, max_bytes: int, timeout_s: float) -> bytes:
    """The body of ``url`` (at most ``max_bytes``), following up to MAX_REDIRECTS checked redirects."""
    with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            scheme, host, port, address = checked_address(url)
            parts = urlsplit(url)
            shown = f"[{address}]" if ":" in address else address
            pinned = parts._replace(netloc=f"{shown}:{port}").geturl()
            headers = {"Host": parts.netloc.rpartition("@")[2], "Accept": "image/*"}
            extensions = {"sni_hostname": host} if scheme == "https" else {}
            try:
                with client.stream("GET", pinned, headers=headers, extensions=extensions) as reply:
                    if reply.is_redirect:
                        url = urljoin(url, reply.headers.get("location", ""))
                        continue
                    if reply.status_code != 200:
                        raise FetchError(f"fetching the image URL gave HTTP {reply.status_code}")
                    return _read_capped(reply, max_bytes)
            except httpx.TimeoutException:
                raise FetchError(f"fetching the image URL took longer than {timeout_s:g} s", 504) from None
            except httpx.HTTPError as exc:
                raise FetchError(f"cannot fetch the image URL: {type(exc).__name__}") from None
    raise FetchError(f"the image URL redirects more than {MAX_REDIRECTS} times")


def _read_capped(reply: httpx.Response, max_bytes: int) -> bytes:
    too_large = FetchError(f"the image at the URL is larger than {max_bytes} bytes", 413)
    declared = reply.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    for chunk in reply.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)
