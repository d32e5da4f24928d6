"""``moonlet data convert coco|narratives`` and ``moonlet data rewrite`` (added to ``moonlet data``)."""

from __future__ import annotations

import argparse
import json

from ...cli_args import non_negative_int, positive_int


def _common(p: argparse.ArgumentParser, images: bool = True) -> None:
    if images:
        p.add_argument("--images", required=True, help="directory holding the images")
    p.add_argument("--out", required=True, help="output directory (must be empty unless --force)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="wording seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace the rows and meta.json already in --out")


def add_convert_parsers(sub) -> None:
    """Add ``convert`` (``coco``, ``narratives``) and ``rewrite`` to ``moonlet data``'s subparsers."""
    convert = sub.add_parser("convert", help="turn real annotations (COCO, Localized Narratives) into rows")
    kinds = convert.add_subparsers(dest="convert_source", required=True)
    p = kinds.add_parser("coco", help="COCO instances (and captions) JSON")
    p.add_argument("--instances", required=True, help="instances_*.json")
    p.add_argument("--captions", help="captions_*.json (optional)")
    p.add_argument("--questions", type=non_negative_int, default=6, help="questions per image (default 6)")
    p.add_argument("--shard-size", type=positive_int, default=1000, help="images per JSONL shard (default 1000)")
    _common(p)
    p = kinds.add_parser("narratives", help="Localized Narratives JSONL")
    p.add_argument("--narratives", required=True, help="a *_localized_narratives.jsonl file")
    p.add_argument(
        "--pattern", help="image file name from {image_id} (default: {image_id:0>12}.jpg for COCO, else {image_id}.jpg)"
    )
    p.add_argument("--shard-size", type=positive_int, default=1000, help="narratives per JSONL shard (default 1000)")
    _common(p)
    p = sub.add_parser("rewrite", help="reword captions through an OpenAI-compatible chat endpoint")
    p.add_argument("--data", required=True, help="dataset directory or JSONL file")
    p.add_argument("--endpoint", required=True, help="base URL, .../v1 or .../v1/chat/completions")
    p.add_argument("--model", help="model name to send")
    p.add_argument("--api-key", help="sent as a Bearer token")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    p.add_argument(
        "--max-failures",
        type=positive_int,
        default=5,
        help="stop calling the endpoint after this many failures in a row (default 5)",
    )
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    _common(p, images=False)


def run_convert(args: argparse.Namespace) -> int:
    """Run ``moonlet data convert ...`` or ``moonlet data rewrite``; prints a JSON summary."""
    try:
        return _run(args)
    except KeyError as exc:  # a field the official format has is missing
        raise ValueError(f"the input lacks a field: {exc}") from None


def _run(args: argparse.Namespace) -> int:
    from . import convert_coco, convert_narratives, rewrite_dataset

    if args.data_command == "rewrite":
        meta = rewrite_dataset(
            args.data,
            args.out,
            args.endpoint,
            args.model,
            args.api_key,
            args.timeout,
            args.max_failures,
            args.temperature,
            args.seed,
            args.force,
        )
        keys = ("captions", "rewritten", "kept")
    elif args.convert_source == "coco":
        meta = convert_coco(
            args.instances, args.images, args.out, args.captions, args.seed, args.questions, args.shard_size, args.force
        )
    else:
        meta = convert_narratives(
            args.narratives, args.images, args.out, args.seed, args.pattern, args.shard_size, args.force
        )
    if args.data_command == "convert":
        keys = (meta["unit"], "missing_images", "rows", "kinds", "shards")
    print(json.dumps({k: meta[k] for k in keys}))
    return 0
