"""``moonlet eval BENCHMARK --data PATH``: run, resume or re-score a benchmark."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..cli_args import add_model_arguments, add_quant_arguments, quant_choice
from .benchmarks import BENCHMARKS, get_benchmark, load_samples
from .report import format_table, write_results
from .runner import predict, read_predictions
from .samples import DatasetError
from .scoring import score

EXAMPLES = """examples:
  moonlet eval vqav2 --data data/vqav2 --limit 500 --batch-size 16
  moonlet eval pope --data data/POPE/ --images data/coco/val2014
  moonlet eval docvqa --data data/docvqa-parquet/ --out runs/docvqa
  moonlet eval docvqa --data data/docvqa-parquet/ --out runs/docvqa --rescore
  moonlet eval synthetic --data data/synthetic/
"""


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``eval`` command to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "eval",
        help="score a model on a VQA / grounding benchmark",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("benchmark", choices=sorted(BENCHMARKS), metavar="BENCHMARK", help=", ".join(BENCHMARKS))
    p.add_argument("--data", required=True, help="annotation file, its folder, or parquet file(s) of a hub copy")
    p.add_argument("--images", help="image folder (default: looked for beside the annotations)")
    p.add_argument("--limit", type=int, help="evaluate only the first N samples")
    p.add_argument(
        "--out", help="output folder for predictions.jsonl and results.json (default: eval_results/BENCHMARK)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="questions decoded together (default: 8)")
    p.add_argument("--max-tokens", type=int, help="answer length limit (default: per benchmark)")
    p.add_argument("--max-objects", type=int, help="most boxes or points per detect/point call")
    p.add_argument("--prompt", help="question template with {question} (default: per benchmark)")
    p.add_argument("--box-format", choices=["xywh", "xyxy"], default="xywh", help="pixel boxes in COCO parquet copies")
    p.add_argument("--rescore", action="store_true", help="score the saved predictions without loading the model")
    p.add_argument("--fresh", action="store_true", help="discard saved predictions instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(p)
    add_quant_arguments(p)
    p.set_defaults(func=run_eval)
    return p


RUN_FILE = "run.json"


def _claim_run(out: Path, identity: dict, resuming: bool) -> None:
    """Record what produces the predictions in ``out``; refuse to resume someone else's."""
    path = out / RUN_FILE
    if resuming and path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in identity if previous.get(k) != identity[k])
        if changed:
            raise DatasetError(
                f"{out} holds predictions made with a different {', '.join(changed)}; use --fresh or another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, indent=1) + "\n", encoding="utf-8")


def _evaluate(args: argparse.Namespace) -> dict:
    benchmark = get_benchmark(args.benchmark)
    if args.limit is not None and args.limit < 1:
        raise DatasetError("--limit must be a positive number")
    images = Path(args.images) if args.images else None
    samples = load_samples(benchmark, Path(args.data), images, args.box_format, check=not args.rescore)
    if args.limit:
        samples = samples[: args.limit]
    out = Path(args.out) if args.out else Path("eval_results") / benchmark.name
    predictions_file = out / "predictions.jsonl"
    identity = {
        "benchmark": benchmark.name,
        "model": args.model or "moonlet-nano",
        "revision": args.revision,
        "prompt": args.prompt or benchmark.prompt,
        "max_tokens": args.max_tokens or benchmark.max_tokens,
        "dtype": args.dtype,
        "quant": {k: list(v) if isinstance(v, tuple) else v for k, v in quant_choice(args).items()} or None,
    }
    started = time.perf_counter()
    if args.rescore:
        if not predictions_file.is_file():
            raise DatasetError(f"nothing to re-score: {predictions_file} not found")
        predictions = read_predictions(predictions_file)
    else:
        if args.fresh and predictions_file.exists():
            predictions_file.unlink()
        _claim_run(out, identity, predictions_file.exists())
        wanted = {s.id for s in samples}
        if wanted - set(read_predictions(predictions_file)):
            import moonlet

            model = moonlet.load(
                args.model, revision=args.revision, device=args.device, dtype=args.dtype, **quant_choice(args)
            )
        else:
            model = None  # everything is already predicted
        predictions = predict(
            model,
            benchmark,
            samples,
            predictions_file,
            args.batch_size,
            args.max_tokens,
            args.prompt,
            args.max_objects,
            progress=not args.no_progress,
        )
    if args.rescore and (out / RUN_FILE).is_file():
        identity = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    results = {
        **identity,
        "data": str(args.data),
        "limit": args.limit,
        "rescored": bool(args.rescore),
        **score(benchmark.metric, samples, predictions),
        "seconds": round(time.perf_counter() - started, 2),
        "predictions": str(predictions_file),
    }
    write_results(out / "results.json", results)
    return results


def run_eval(args: argparse.Namespace) -> int:
    """Run the ``eval`` command; 0 on success, 2 for a bad data path or layout."""
    from ..image import ImageError

    try:
        results = _evaluate(args)
    except (DatasetError, ImageError) as exc:
        print(f"moonlet: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m moonlet.eval BENCHMARK --data PATH``."""
    parser = argparse.ArgumentParser(prog="moonlet")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    return run_eval(parser.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)]))
