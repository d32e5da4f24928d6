"""Progress bars for long loops (``moonlet batch``, the Ray pipeline, ``moonlet eval``, training):
a tqdm bar when tqdm is installed (the ``train`` and ``eval`` extras), else a silent stand-in with
the same methods, so callers never check which one they got."""

from __future__ import annotations


class SilentBar:
    """Does nothing; what :func:`progress_bar` gives when disabled or without tqdm."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> SilentBar:
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(total: int | None, initial: int = 0, desc: str = "", enabled: bool = True, *, unit: str = "it"):
    """A bar with ``update(n)``, ``set_postfix(**values)`` and ``close()``, usable as a context manager.

    ``total`` None counts without an end (a stream of unknown length); ``initial`` is the work
    already done by an earlier run (a resumed job)."""
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
    return SilentBar()
