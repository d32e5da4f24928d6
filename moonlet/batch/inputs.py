"""Batch inputs: a folder, a glob or a JSONL/parquet manifest, on a local path or any pyarrow
filesystem URI (``s3://…``, ``gs://…``, ``file://…``), listed as records
``{"key", "image", "question", "object"}`` and read as bytes."""

from __future__ import annotations

import fnmatch
import glob
import os
import posixpath
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MANIFEST_SUFFIXES = {".jsonl", ".json", ".parquet"}
PROMPT_COLUMNS = ("question", "object")


def is_uri(path: str) -> bool:
    return "://" in str(path)


def filesystem(path: str):
    """(pyarrow filesystem, path inside it) for a URI or a local path."""
    from pyarrow import fs

    if is_uri(path):
        return fs.FileSystem.from_uri(str(path))
    return fs.LocalFileSystem(), os.path.abspath(path)


def read_bytes(path: str) -> bytes:
    if not is_uri(path):
        return Path(path).read_bytes()
    handle, inner = filesystem(path)
    with handle.open_input_stream(inner) as stream:
        return stream.read()


def _has_image_suffix(path: str) -> bool:
    return posixpath.splitext(str(path))[1].lower() in IMAGE_SUFFIXES


def _list_uri(source: str) -> list[str]:
    from pyarrow import fs

    handle, inner = filesystem(source)
    scheme = source[: source.index("://") + 3]
    pattern = None
    if any(c in inner for c in "*?["):
        pattern = inner
        inner = inner[: min(inner.index(c) for c in "*?[" if c in inner)].rsplit("/", 1)[0]
    infos = handle.get_file_info(fs.FileSelector(inner, recursive=True))
    paths = sorted(i.path for i in infos if i.type == fs.FileType.File)
    if pattern is not None:
        paths = [p for p in paths if fnmatch.fnmatch(p, pattern)]
    return [scheme + p for p in paths if _has_image_suffix(p)]


def list_images(source: str) -> list[str]:
    """Image paths of a folder (recursive) or a glob, sorted; local paths or a URI."""
    if is_uri(source):
        files = _list_uri(source)
    elif Path(source).is_dir():
        files = [str(p) for p in sorted(Path(source).rglob("*")) if _has_image_suffix(p)]
    else:
        files = [p for p in sorted(glob.glob(source, recursive=True)) if _has_image_suffix(p)]
    if not files:
        raise FileNotFoundError(f"no images found in {source}")
    return files


def is_manifest(source: str) -> bool:
    return posixpath.splitext(str(source))[1].lower() in MANIFEST_SUFFIXES


def read_manifest(source: str, image_column: str = "image", key_column: str | None = None) -> list[dict]:
    """Records of a JSONL or parquet manifest; relative image paths are resolved against the
    manifest's folder. The key is ``key_column``'s value, else the image path as written."""
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    handle, inner = filesystem(source)
    if inner.lower().endswith(".parquet"):
        table = pq.read_table(inner, filesystem=handle)
    else:
        with handle.open_input_stream(inner) as stream:
            table = pajson.read_json(stream)
    for column in (image_column, key_column):
        if column and column not in table.column_names:
            raise ValueError(f"{source} has no column {column!r} (columns: {table.column_names})")
    base = posixpath.dirname(source) if is_uri(source) else os.path.dirname(source)
    records = []
    for row in table.to_pylist():
        image = str(row[image_column])
        absolute = is_uri(image) or posixpath.isabs(image)
        record = {
            "key": str(row[key_column]) if key_column else image,
            "image": image if absolute else (posixpath.join if is_uri(base) else os.path.join)(base, image),
        }
        record.update({c: row.get(c) for c in PROMPT_COLUMNS})
        records.append(record)
    return records


def list_records(source: str, image_column: str = "image", key_column: str | None = None) -> list[dict]:
    """Records of any source; keys must be unique (a rerun skips keys already written)."""
    if is_manifest(source):
        records = read_manifest(source, image_column, key_column)
    else:
        records = [{"key": path, "image": path, "question": None, "object": None} for path in list_images(source)]
    seen = set()
    for record in records:
        if record["key"] in seen:
            raise ValueError(f"key {record['key']!r} appears twice in {source}; name a unique column with --key-column")
        seen.add(record["key"])
    return records
