"""Finding a benchmark's image files from the annotation path (or an explicit ``--images``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .samples import DatasetError, LazyImage, Sample


class ImageFinder:
    """Resolves relative image names against candidate folders, first existing one wins."""

    def __init__(self, roots: Iterable[Path], images: Path | None = None):
        roots = list(roots)
        if images is not None:
            if not images.is_dir():
                raise DatasetError(f"image folder not found: {images}")
            roots = [images]
        self.roots = list(dict.fromkeys(roots))

    def __call__(self, name: str) -> Path:
        """The first existing ``root/name`` (then ``root/basename``); else the first guess."""
        relative = Path(name)
        for candidate in [root / relative for root in self.roots] + [root / relative.name for root in self.roots]:
            if candidate.is_file():
                return candidate
        return self.roots[0] / relative


def check_images(samples: list[Sample], count: int = 3) -> None:
    """Fail early, naming the file, when the first images of a benchmark are not there."""
    for sample in samples[:count]:
        image = sample.image
        if isinstance(image, Path) and not image.is_file():
            raise DatasetError(f"image for sample {sample.id} not found: {image}; point --images at the image folder")
        if not isinstance(image, (Path, LazyImage, bytes)):
            raise DatasetError(f"sample {sample.id} has no usable image ({type(image).__name__})")
