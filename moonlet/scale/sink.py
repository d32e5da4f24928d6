"""Output shards for the Ray pipeline: ``part-<run>-<n>.jsonl`` or ``.parquet`` in a folder (local
or a URI). Each shard is written to a temporary name and renamed, so a shard is either complete
or absent; the keys of the shards already there are read at start and skipped by a rerun."""

from __future__ import annotations

import io
import json
import time
import uuid

from ..batch.inputs import filesystem

FORMATS = ("jsonl", "parquet")
TMP_PREFIX = ".tmp-"


class ShardSink:
    def __init__(self, out: str, fmt: str = "jsonl"):
        if fmt not in FORMATS:
            raise ValueError(f"unknown output format {fmt!r}; use one of {FORMATS}")
        self.fs, self.dir = filesystem(out)
        self.fmt = fmt
        self.run = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.shards = 0
        self.fs.create_dir(self.dir, recursive=True)

    def _files(self):
        from pyarrow import fs

        infos = self.fs.get_file_info(fs.FileSelector(self.dir))
        return [i for i in infos if i.type == fs.FileType.File]

    def existing_keys(self) -> set[str]:
        """Keys of the complete shards already written (any format); leftover temporary files of an
        interrupted run are removed."""
        keys = set()
        for info in self._files():
            if info.base_name.startswith(TMP_PREFIX):
                self.fs.delete_file(info.path)
            elif info.base_name.startswith("part-"):
                keys.update(row["image"] for row in self.read(info.path))
        return keys

    def read(self, path: str) -> list[dict]:
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            # a column another row needed reads back as None here: drop those (JSONL keeps them)
            rows = pq.read_table(path, filesystem=self.fs).to_pylist()
            return [{k: v for k, v in row.items() if v is not None} for row in rows]
        with self.fs.open_input_stream(path) as stream:
            return [json.loads(line) for line in stream.read().decode().splitlines()]

    def rows(self) -> list[dict]:
        """Every row written so far, all shards."""
        return [
            row
            for info in sorted(self._files(), key=lambda i: i.path)
            if info.base_name.startswith("part-")
            for row in self.read(info.path)
        ]

    def write(self, rows: list[dict]) -> str:
        """Write one shard atomically; returns its path."""
        name = f"part-{self.run}-{self.shards:05d}.{self.fmt}"
        self.shards += 1
        tmp, final = f"{self.dir}/{TMP_PREFIX}{name}", f"{self.dir}/{name}"
        if self.fmt == "jsonl":
            data = "".join(json.dumps(row) + "\n" for row in rows).encode()
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            buffer = io.BytesIO()
            columns = list(dict.fromkeys(k for row in rows for k in row))  # error rows lack the result's
            pq.write_table(pa.table({c: [row.get(c) for row in rows] for c in columns}), buffer)
            data = buffer.getvalue()
        with self.fs.open_output_stream(tmp) as stream:
            stream.write(data)
        self.fs.move(tmp, final)
        return final
