"""Turning generated ids into text pieces that never split a word or a UTF-8 character."""

from __future__ import annotations

from collections.abc import Callable, Sequence

CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x2F800, 0x2FA1F))


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in CJK_RANGES)


class TextStreamer:
    """Decodes ids cumulatively and releases text at safe boundaries.

    A newline or a trailing CJK character releases everything; otherwise
    text up to and including the last space is released. ``finish`` releases the rest, so
    joining every piece gives the decoded text of all ids.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]):
        self.decode = decode
        self.ids: list[int] = []
        self.emitted = 0  # characters of the current buffer already released

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.decode(self.ids)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for more ids
            return ""
        if "\n" in text[self.emitted :] or (text and is_cjk(text[-1])):
            piece, self.emitted = text[self.emitted :], len(text)
            return piece
        cut = text.rfind(" ") + 1
        if cut > self.emitted:
            piece, self.emitted = text[self.emitted : cut], cut
            return piece
        return ""

    def finish(self) -> str:
        text = self.decode(self.ids) if self.ids else ""
        piece, self.emitted = text[self.emitted :], len(text)
        return piece
