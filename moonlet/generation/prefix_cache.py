"""A bounded LRU cache of prefilled image prefixes, keyed by a hash of the image's pixels."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

from PIL import Image

from .engine import EncodedImage


def pixel_key(image: Image.Image) -> str:
    """Hash of an RGB image's size and pixels: equal for the same picture, however it arrived."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.width}x{image.height}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class PrefixCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, EncodedImage] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.entries.values())

    def get_or_create(self, key: str, create: Callable[[], EncodedImage]) -> EncodedImage:
        if key in self.entries:
            self.hits += 1
            self.entries.move_to_end(key)
            return self.entries[key]
        self.misses += 1
        encoded = create()
        if self.max_bytes > 0 and encoded.nbytes <= self.max_bytes:
            self.entries[key] = encoded
            while self.nbytes > self.max_bytes:
                self.entries.popitem(last=False)
        return encoded

    def clear(self) -> None:
        self.entries.clear()

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "entries": len(self.entries), "bytes": self.nbytes}
