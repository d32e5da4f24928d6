"""A tqdm progress bar when tqdm is installed, else a silent stand-in."""

from __future__ import annotations


class _Silent:
    def __init__(self, *args, **kwargs):
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(total: int, initial: int = 0, desc: str = "", enabled: bool = True):
    """A context-managed bar with ``update(n)``."""
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, initial=initial, desc=desc, unit="q", dynamic_ncols=True)
    return _Silent()
