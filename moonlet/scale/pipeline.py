"""Bulk inference on Ray Data: a CPU stage (tasks) reads and decodes images in parallel, an actor
pool holds one model per actor and runs the engine's batching, and the driver writes the rows
as atomic shards (``sink.ShardSink``), skipping keys already written (resumable)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import numpy as np

from ..batch.inputs import list_records
from ..batch.rows import Task, decode, infer_rows
from ..progress import progress_bar
from .sink import ShardSink

RECORD_COLUMNS = ("key", "image", "question", "object")


@dataclass
class Summary:
    written: int = 0  # rows written by this run
    errors: int = 0  # of which error rows
    skipped: int | None = 0  # inputs already written by an earlier run (None: unknown, a Dataset source)
    shards: list[str] = field(default_factory=list)


def _decode_batch(batch):
    """CPU stage: read and decode a batch of records into RGB pixels (or an error message)."""
    import pyarrow as pa

    columns = {name: [] for name in (*RECORD_COLUMNS, "pixels", "width", "height", "error", "decode_s")}
    for record in batch.to_pylist():
        pixels, error, seconds = decode(record)
        for name in RECORD_COLUMNS:
            columns[name].append(record.get(name))
        columns["pixels"].append(None if pixels is None else pixels.tobytes())
        columns["width"].append(None if pixels is None else pixels.shape[1])
        columns["height"].append(None if pixels is None else pixels.shape[0])
        columns["error"].append(error)
        columns["decode_s"].append(seconds)
    types = {
        "pixels": pa.binary(),
        "width": pa.int32(),
        "height": pa.int32(),
        "error": pa.string(),
        "decode_s": pa.float64(),
    }
    return pa.table({name: pa.array(values, types.get(name, pa.string())) for name, values in columns.items()})


class _Infer:
    """Actor: one model, loaded once; a batch of decoded records → JSON rows."""

    def __init__(self, task: Task, load: dict):
        import moonlet

        self.task = task
        self.model = moonlet.load(**load)

    def __call__(self, batch):
        import pyarrow as pa

        decoded = []
        for r in batch.to_pylist():
            pixels = None
            if r["pixels"] is not None:
                pixels = np.frombuffer(r["pixels"], np.uint8).reshape(r["height"], r["width"], 3)
            decoded.append(({n: r[n] for n in RECORD_COLUMNS}, pixels, r["error"], r["decode_s"]))
        rows = infer_rows(self.model, self.task, decoded)
        return pa.table({"key": [row["image"] for row in rows], "row": [json.dumps(row) for row in rows]})


def _normalize(batch, image_column: str, key_column: str | None):
    """A user's Dataset batch → record columns (plus ``bytes`` when the images come as bytes)."""
    import pyarrow as pa

    n = batch.num_rows
    get = lambda name: batch.column(name) if name in batch.column_names else pa.nulls(n, pa.string())  # noqa: E731
    image = get(image_column).cast(pa.string()) if image_column in batch.column_names else get("path")
    columns = {
        "key": get(key_column).cast(pa.string()) if key_column else image,
        "image": image,
        "question": get("question"),
        "object": get("object"),
    }
    if "bytes" in batch.column_names:
        columns["bytes"] = batch.column("bytes")
    return pa.table(columns)


def build_dataset(
    source, done: set[str], image_column: str = "image", key_column: str | None = None, limit: int | None = None
):
    """(Dataset of the records still to do, number skipped) for a path/URI source or a ``ray.data.Dataset``
    with an image path column (or ``bytes`` and ``path``, as ``ray.data.read_binary_files(include_paths=True)``
    gives)."""
    import ray.data

    if isinstance(source, ray.data.Dataset):
        columns = {"image_column": image_column, "key_column": key_column}
        ds = source.map_batches(_normalize, batch_format="pyarrow", fn_kwargs=columns)
        if done:
            ds = ds.filter(lambda row: row["key"] not in done)
        return (ds.limit(limit) if limit is not None else ds), None
    records = list_records(source, image_column, key_column)
    todo = [r for r in records if r["key"] not in done]
    skipped, todo = len(records) - len(todo), todo[:limit]
    return (ray.data.from_items(todo) if todo else None), skipped


def run_pipeline(
    source,
    out: str,
    task: Task = Task(),
    *,
    model=None,
    revision=None,
    device=None,
    dtype=None,
    workers: int = 1,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float = 1,
    batch_size: int = 8,
    shard_rows: int = 1000,
    fmt: str = "jsonl",
    limit: int | None = None,
    image_column: str = "image",
    key_column: str | None = None,
    progress: bool = False,
) -> Summary:
    """Run ``task`` over ``source`` on the connected Ray cluster, writing shards under ``out``.

    ``gpus_per_worker`` defaults to 1 when the cluster has GPUs, else 0 (actors run on CPU).
    ``limit`` stops after that many new inputs (the rest is left for a rerun)."""
    import ray
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    sink = ShardSink(out, fmt)
    summary = Summary()
    ds, summary.skipped = build_dataset(source, sink.existing_keys(), image_column, key_column, limit)
    if ds is None:
        return summary
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    if gpus_per_worker > 0 and device is None:
        device = "cuda"
    task = replace(task, model=task.model or model, revision=task.revision or revision)
    load = {"model": model, "revision": revision, "device": device or "cpu", "dtype": dtype}
    # Decode tasks reserve no CPU: they cannot then wait forever behind actors holding every CPU,
    # and their resources differ from the actors', so Ray Data keeps them a separate stage rather
    # than fusing them into the actors. The pool size bounds how many run at once.
    ds = ds.map_batches(
        _decode_batch,
        batch_size=batch_size,
        batch_format="pyarrow",
        num_cpus=0,
        compute=TaskPoolStrategy(size=max(2, 2 * workers)),
    )
    ds = ds.map_batches(
        _Infer,
        fn_constructor_kwargs={"task": task, "load": load},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(size=workers),
        num_gpus=gpus_per_worker,
        num_cpus=cpus_per_worker,
    )
    bar = progress_bar(None, 0, "batch", progress, unit="image")
    pending: list[dict] = []

    def flush():
        summary.shards.append(sink.write(pending))
        summary.written += len(pending)
        summary.errors += sum("error" in row for row in pending)
        pending.clear()

    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows = [json.loads(text) for text in batch.column("row").to_pylist()]
        pending.extend(rows)
        bar.update(len(rows))
        if len(pending) >= shard_rows:
            flush()
    if pending:
        flush()
    bar.close()
    return summary
