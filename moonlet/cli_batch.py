"""``moonlet batch``: caption or query every image of a folder or glob through the engine's
batching, writing JSONL; a rerun skips the images already written (resumable)."""

from __future__ import annotations

import glob
import json
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def list_images(source: str) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        files = [p for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [Path(p) for p in sorted(glob.glob(source, recursive=True)) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise FileNotFoundError(f"no images found in {source}")
    return files


def _drop_torn_line(out: Path) -> None:
    """An interrupted run may leave a partial last line: cut it, its image is redone."""
    if out.is_file():
        text = out.read_text()
        if text and not text.endswith("\n"):
            out.write_text(text[: text.rfind("\n") + 1])


def done_keys(out: Path) -> set[str]:
    """Keys already written; a torn last line (interrupted write) is ignored and rewritten."""
    if not out.is_file():
        return set()
    keys = set()
    for line in out.read_text().splitlines():
        try:
            keys.add(json.loads(line)["image"])
        except (json.JSONDecodeError, KeyError):
            continue
    return keys


def run_batch(model, args) -> int:
    from .image import ImageError

    out = Path(args.out)
    images = list_images(args.source)
    done = done_keys(out)
    todo = [p for p in images if str(p) not in done]
    _drop_torn_line(out)
    progress = _progress(len(images), len(images) - len(todo))
    settings = {"max_tokens": args.max_tokens} if args.max_tokens else None
    failures = 0
    with out.open("a") as handle:
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start : start + args.batch_size]
            rows = _run_chunk(model, chunk, args, settings, ImageError)
            for row in rows:
                failures += "error" in row
                handle.write(json.dumps(row) + "\n")
            handle.flush()
            if progress is not None:
                progress.update(len(chunk))
    if progress is not None:
        progress.close()
    return 1 if failures else 0


def _run_chunk(model, chunk, args, settings, image_error) -> list[dict]:
    """One engine batch; an unreadable image becomes an error row instead of failing the chunk."""
    rows, items, keys = [], [], []
    for path in chunk:
        try:
            items.append(model.encode_image(path))
            keys.append(path)
        except image_error as exc:
            rows.append({"image": str(path), "error": str(exc)})
    if items:
        if args.question:
            results = model.batch_query([(enc, args.question) for enc in items], settings=settings)
            rows += [{"image": str(p), "question": args.question, "answer": r["answer"]} for p, r in zip(keys, results)]
        else:
            results = model.batch_caption(items, length=args.length, settings=settings)
            rows += [{"image": str(p), "length": args.length, "caption": r["caption"]} for p, r in zip(keys, results)]
    return rows


def _progress(total: int, initial: int):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="image", desc="batch")
