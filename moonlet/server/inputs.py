"""Request inputs: images from data URLs, bare base64 or (when allowed) http(s) URLs; strict
request bodies; the served model's name."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, ConfigDict

from ..image import ImageError, ImageTooLargeError, load_image
from .errors import ApiError
from .fetch import FetchError, fetch
from .limits import ServerLimits


def image_bytes(value: str, field: str, limits: ServerLimits = ServerLimits()) -> bytes:
    """Bytes of a data URL, bare base64 text, or an http(s) URL where ``limits`` allow fetching."""
    if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
        if not limits.allow_image_urls:
            raise ApiError(
                400,
                f"{field}: image URLs are not fetched by this server (start it with --allow-image-urls); "
                "send the image as a base64 data URL",
            )
        try:
            return fetch(value.strip(), limits.image_url_max_bytes, limits.image_url_timeout_s)
        except FetchError as exc:
            raise ApiError(exc.status, f"{field}: {exc}") from None
    return decode_base64(value, field)


def decode_base64(value: str, field: str) -> bytes:
    """Bytes of a ``data:<mime>;base64,<data>`` URL or of bare base64 text."""
    if not isinstance(value, str):
        raise ApiError(422, f"{field}: expected a string")
    text = value.strip()
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma:
            raise ApiError(400, f"{field}: malformed data URL (no comma after the header)")
        if not header.endswith(";base64"):
            raise ApiError(400, f"{field}: data URLs must be base64 encoded (data:image/jpeg;base64,...)")
    elif "://" in text[:16]:
        raise ApiError(400, f"{field}: only data URLs, base64 text or (where allowed) http(s) URLs are accepted")
    text = "".join(text.split())
    if not text:
        raise ApiError(400, f"{field}: the image data is empty")
    if "-" in text or "_" in text:  # URL-safe alphabet
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{field}: not valid base64 data") from None


def decode_image(value: str, field: str, limits: ServerLimits = ServerLimits()) -> Image.Image:
    """A loaded PIL image; ApiError (400, or 413 over the pixel limit) naming ``field``."""
    data = image_bytes(value, field, limits)
    try:
        return load_image(data, max_pixels=limits.max_image_pixels)
    except ImageError as exc:
        message = re.sub(r"\s*<_io\.\w+ object at 0x[0-9a-fA-F]+>", "", str(exc))
        raise ApiError(413 if isinstance(exc, ImageTooLargeError) else 400, f"{field}: {message}") from None
    except Exception as exc:  # Pillow's DecompressionBombError and friends
        raise ApiError(400, f"{field}: cannot decode image ({type(exc).__name__})") from None


class StrictBody(BaseModel):
    """A request body that refuses fields it does not declare (422 naming the field)."""

    model_config = ConfigDict(extra="forbid")


def refuse_unsupported(body: BaseModel, names: tuple[str, ...], prefix: str = "") -> None:
    """422 for protocol fields this server declares but does not implement, when a client sets them."""
    for name in names:
        if getattr(body, name, None) not in (None, False, 0, "", [], {}):
            raise ApiError(422, f"{prefix}{name}: not supported by this server")


def served_name(model) -> str:
    """The id clients see: a hub id as is, a local path by its directory or file name."""
    name = getattr(model, "name", None) or "moonlet"
    path = Path(name)
    if path.exists():
        return path.stem if path.is_file() else path.name
    return name
