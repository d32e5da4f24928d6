"""Rows of Hugging Face parquet copies, with image cells read lazily per row group."""

from __future__ import annotations

import json
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from .samples import DatasetError, LazyImage

IMAGE_COLUMNS = ("image",)


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError("reading parquet files needs pyarrow: pip install pyarrow (or moonlet[eval])") from None
    return pq


def parquet_files(path: Path) -> list[Path]:
    """The file itself, or every ``*.parquet`` below a directory, sorted."""
    if path.is_file():
        return [path]
    return sorted(path.rglob("*.parquet")) if path.is_dir() else []


@lru_cache(maxsize=4)
def _column(file: Path, group: int, column: str) -> list:
    return _pyarrow_parquet().ParquetFile(file).read_row_group(group, columns=[column]).column(0).to_pylist()


def decode_image_cell(value: Any, base: Path) -> Any:
    """An image cell as the model takes it: ``{"bytes", "path"}`` struct, raw bytes or a path."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path"):
            return base / value["path"]
        raise DatasetError(f"image cell in {base} has neither bytes nor path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value:
        return base / value
    raise DatasetError(f"unreadable image cell in {base}: {type(value).__name__}")


def _read_cell(file: Path, group: int, index: int, column: str) -> Any:
    return decode_image_cell(_column(file, group, column)[index], file.parent)


def read_parquet(path: Path, image_columns: tuple[str, ...] = IMAGE_COLUMNS) -> list[dict]:
    """All rows of the parquet file(s) at ``path`` as dicts; image columns become LazyImage.

    Every row also carries ``__file__`` (the parquet file it came from) and ``__row__`` (its
    index in that file).
    """
    files = parquet_files(path)
    if not files:
        raise DatasetError(f"no parquet files found at {path}")
    pq = _pyarrow_parquet()
    rows: list[dict] = []
    for file in files:
        try:
            handle = pq.ParquetFile(file)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise DatasetError(f"cannot read parquet file {file}: {exc}") from None
        names = handle.schema_arrow.names
        lazy = [c for c in names if c in image_columns]
        plain = [c for c in names if c not in lazy]
        row_number = 0
        for group in range(handle.num_row_groups):
            count = handle.metadata.row_group(group).num_rows
            table = handle.read_row_group(group, columns=plain).to_pylist() if plain else [{} for _ in range(count)]
            for index, row in enumerate(table):
                for column in lazy:
                    where = f"{file.name} row group {group} row {index} column {column}"
                    row[column] = LazyImage(partial(_read_cell, file, group, index, column), where)
                row["__file__"], row["__row__"] = file, row_number
                row_number += 1
                rows.append(row)
    return rows


@lru_cache(maxsize=16)
def class_label_names(file: Path) -> dict[str, list[str]]:
    """ClassLabel names recorded by ``datasets`` in the parquet schema, by feature name."""
    metadata = _pyarrow_parquet().read_schema(file).metadata or {}
    try:
        info = json.loads(metadata.get(b"huggingface", b"{}"))
    except ValueError:
        return {}
    found: dict[str, list[str]] = {}

    def walk(node, name):
        if isinstance(node, dict):
            if node.get("_type") == "ClassLabel" and isinstance(node.get("names"), list):
                found[name] = node["names"]
            for key, value in node.items():
                walk(value, key if key not in ("feature", "info", "features") else name)
        elif isinstance(node, list):
            for value in node:
                walk(value, name)

    walk(info, "")
    return found
