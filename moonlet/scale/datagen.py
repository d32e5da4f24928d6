"""``moonlet data generate --ray``: scenes are sampled, rendered and annotated in Ray tasks, a chunk
of indices per task; the driver receives the examples in index order and writes them with the
single-process writer, so shards, images and meta.json are byte-identical for the same seed."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from ..data.config import AnnotationConfig, SceneConfig
from ..data.generate import Example, iter_examples


def _chunk(seed: int, start: int, count: int, scene_config, annotation_config) -> list[Example]:
    return list(iter_examples(seed, count, start, scene_config, annotation_config))


def ray_examples(
    seed: int,
    count: int,
    start: int = 0,
    scene_config: SceneConfig | None = None,
    annotation_config: AnnotationConfig | None = None,
    chunk: int = 16,
    in_flight: int | None = None,
) -> Iterator[Example]:
    """Examples ``start .. start + count - 1`` computed on the connected Ray cluster, yielded in
    order; at most ``in_flight`` chunks (default: twice the cluster's CPUs) are pending at once."""
    import ray

    remote = ray.remote(num_cpus=1)(_chunk)
    in_flight = in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    pending: deque = deque()
    for first in range(start, start + count, chunk):
        pending.append(remote.remote(seed, first, min(chunk, start + count - first), scene_config, annotation_config))
        if len(pending) >= in_flight:
            yield from ray.get(pending.popleft())
    while pending:
        yield from ray.get(pending.popleft())
