"""``moonlet data generate|validate|convert|rewrite``: write a synthetic dataset, check a dataset's rows,
convert real annotations (``moonlet.data.convert``) or reword their captions.

Wire into the main CLI with ``add_data_parser(subparsers)`` and dispatch ``args.command == "data"``
to ``run_data(args)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from ..cli_args import non_negative_int, positive_int


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; use N or WxH") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 32:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; use N or WxH, at least 32")
    return parts[0], parts[1]


def _objects(text: str) -> tuple[int, int]:
    try:
        low, _, high = text.partition("-")
        bounds = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad object count {text!r}; use N or MIN-MAX") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"bad object count {text!r}; need 1 <= MIN <= MAX")
    return bounds


def _names(text: str) -> tuple[str, ...]:
    """``a,b`` → ("a", "b"); ``none`` → (). The configs check the names."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    return () if names == ("none",) else names


def add_data_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``data`` (with ``generate``, ``validate``, ``convert`` and ``rewrite``) to an argparse subparsers object."""
    parser = subparsers.add_parser("data", help="generate, validate or convert training data")
    sub = parser.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("generate", help="write synthetic scenes with captions, questions and targets")
    p.add_argument("--out", required=True, help="output directory (must be empty unless --force)")
    p.add_argument("--count", required=True, type=non_negative_int, help="number of scenes")
    p.add_argument("--seed", type=non_negative_int, default=0, help="dataset seed (default 0)")
    p.add_argument("--start", type=non_negative_int, default=0, help="first scene index (default 0)")
    p.add_argument("--shard-size", type=positive_int, default=1000, help="scenes per JSONL shard (default 1000)")
    p.add_argument("--size", type=_size, default=(256, 256), help="image size, N or WxH (default 256)")
    p.add_argument("--questions", type=non_negative_int, default=10, help="questions per scene (default 10)")
    p.add_argument("--objects", type=_objects, default=(1, 6), help="objects per scene, N or MIN-MAX (default 1-6)")
    p.add_argument("--detect", type=non_negative_int, default=2, help="detect targets per scene (default 2)")
    p.add_argument("--point", type=non_negative_int, default=2, help="point targets per scene (default 2)")
    p.add_argument(
        "--captions", type=_names, default=("short", "normal", "long"), help="caption lengths, or none (default all)"
    )
    p.add_argument("--question-types", type=_names, help="only these question types, e.g. position,count_relative")
    p.add_argument("--relations", type=_names, help="only these spatial relations in questions, e.g. left,above")
    p.add_argument("--no-truth", action="store_true", help="do not write ground truth under truth/")
    p.add_argument("--force", action="store_true", help="replace a dataset already in --out")
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="render and annotate in Ray tasks (same bytes): alone, a local instance; else a cluster address",
    )
    p = sub.add_parser("validate", help="check every row of a dataset directory or JSONL file")
    p.add_argument("path")
    p.add_argument("--no-image-check", action="store_true", help="do not check that images exist")
    from .convert.cli import add_convert_parsers

    add_convert_parsers(sub)
    return parser


def _generate(args) -> int:
    from .config import AnnotationConfig, SceneConfig
    from .shards import generate_dataset

    scene_config = SceneConfig(
        width=args.size[0], height=args.size[1], min_objects=args.objects[0], max_objects=args.objects[1]
    )
    chosen = {"question_types": args.question_types, "relations": args.relations}
    annotation_config = AnnotationConfig(
        questions=args.questions,
        detect=args.detect,
        point=args.point,
        caption_lengths=args.captions,
        **{name: value for name, value in chosen.items() if value is not None},
    )
    examples = None
    if args.ray:
        from ..scale.cli import connect
        from ..scale.datagen import ray_examples

        connect(args.ray)
        examples = ray_examples(args.seed, args.count, args.start, scene_config, annotation_config)
    meta = generate_dataset(
        args.out,
        args.count,
        seed=args.seed,
        start=args.start,
        shard_size=args.shard_size,
        scene_config=scene_config,
        annotation_config=annotation_config,
        truth=not args.no_truth,
        overwrite=args.force,
        examples=examples,
    )
    print(json.dumps({k: meta[k] for k in ("seed", "start", "scenes", "rows", "shards")}))
    return 0


def _validate(args) -> int:
    from .reader import iter_rows

    kinds, types = Counter(), Counter()
    for row in iter_rows(args.path, check_images=not args.no_image_check):
        kinds[row.kind] += 1
        if row.kind == "query":
            types[row.type or "untyped"] += 1
    summary = {"rows": sum(kinds.values()), "kinds": dict(kinds), "question_types": dict(sorted(types.items()))}
    print(json.dumps(summary))
    return 0


def run_data(args: argparse.Namespace) -> int:
    """Run ``moonlet data ...``; 0 on success, 2 for bad input (the message goes to stderr)."""
    from .reader import DataFormatError

    try:
        if args.data_command in ("convert", "rewrite"):
            from .convert.cli import run_convert

            return run_convert(args)
        return _generate(args) if args.data_command == "generate" else _validate(args)
    except (DataFormatError, FileExistsError, ValueError, OSError) as exc:
        print(f"moonlet: error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m moonlet.data``), the same as ``moonlet data``."""
    parser = argparse.ArgumentParser(prog="moonlet")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    return run_data(parser.parse_args(argv))
