"""Request inputs: images from data URLs or bare base64, and the served model's name."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, ConfigDict

from ..image import ImageError, load_image
from .errors import ApiError

MAX_PIXELS = 64_000_000


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
    elif text.startswith(("http://", "https://")):
        raise ApiError(400, f"{field}: remote URLs are not fetched; send the image as a base64 data URL")
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


def decode_image(value: str, field: str) -> Image.Image:
    """A loaded PIL image from a data URL or base64 text; ApiError (400/413) naming ``field``."""
    data = decode_base64(value, field)
    try:
        image = load_image(data)
    except ImageError as exc:
        message = re.sub(r"\s*<_io\.\w+ object at 0x[0-9a-fA-F]+>", "", str(exc))
        raise ApiError(400, f"{field}: {message}") from None
    except Exception as exc:  # Pillow's DecompressionBombError and friends
        raise ApiError(400, f"{field}: cannot decode image ({type(exc).__name__})") from None
    if image.width * image.height > MAX_PIXELS:
        raise ApiError(413, f"{field}: image is {image.width}x{image.height}; at most {MAX_PIXELS} pixels are accepted")
    return image


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
