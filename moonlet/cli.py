"""Command line: ``moonlet caption|query|detect|point|gaze|info`` and the delegated sub-commands.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or input (bad image, unknown model).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from .cli_args import (
    add_image_argument,
    add_model_arguments,
    add_quant_arguments,
    add_sampling_arguments,
    add_schema_argument,
    add_variant_arguments,
    numbers,
    option_settings,
    quant_choice,
    sampling_settings,
)

EXAMPLES = """examples:
  moonlet query examples/scene.png "What shapes are there?"
  moonlet caption photo.jpg --length short
  moonlet detect photo.jpg face --json --out faces.png
  moonlet query photo.jpg "What is in the box?" --ref 0.1,0.2,0.5,0.7 --reasoning
  moonlet gaze photo.jpg --eye 0.42,0.31
  moonlet caption photo.jpg --variant my-adapter.safetensors
  moonlet query photo.jpg "How many cats?" --json-schema count.json
  moonlet batch photos/ --out captions.jsonl --length short
  moonlet batch 'photos/*.jpg' --out answers.jsonl --question "How many people?"
  moonlet batch s3://bucket/photos/ --out captions/ --ray auto --workers 4
  moonlet download vikhyatk/moondream2 --revision 2025-06-21
  moonlet query - "What is this?" < photo.jpg
  moonlet info --model vikhyatk/moondream2 --revision 2025-06-21
  moonlet data generate --out scenes/ --count 1000 --seed 0
  moonlet train --data scenes/ --out runs/nano --profile moonlet-nano --steps 2000
  moonlet eval vqav2 --data data/vqav2 --limit 500 --batch-size 16
  moonlet serve --model vikhyatk/moondream2 --port 2020
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moonlet",
        description="Run Moondream vision-language models.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("caption", help="describe an image")
    add_image_argument(p)
    p.add_argument("--length", default="normal", choices=["short", "normal", "long"])
    p.add_argument("--stream", action="store_true", help="print text as it is generated")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_sampling_arguments(p)
    add_variant_arguments(p)
    add_schema_argument(p)
    add_model_arguments(p)
    add_quant_arguments(p)

    p = sub.add_parser("query", help="answer a question about an image")
    add_image_argument(p)
    p.add_argument("question")
    p.add_argument("--reasoning", action="store_true", help="grounded reasoning before the answer (2025-06-21)")
    p.add_argument(
        "--ref", action="append", type=numbers, help="a spatial reference: x,y (point) or x1,y1,x2,y2 (box); repeatable"
    )
    p.add_argument("--stream", action="store_true", help="print text as it is generated")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_sampling_arguments(p)
    add_variant_arguments(p)
    add_schema_argument(p)
    add_model_arguments(p)
    add_quant_arguments(p)

    for name, what in (("detect", "bounding boxes"), ("point", "points")):
        p = sub.add_parser(name, help=f"find {what} of an object")
        add_image_argument(p)
        p.add_argument("object")
        p.add_argument("--max-objects", type=int)
        p.add_argument("--out", help="also write the image with the results drawn on it (PNG)")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        add_variant_arguments(p)
        add_model_arguments(p)
        add_quant_arguments(p)

    p = sub.add_parser("gaze", help="where a person looks, from an eye's position (experimental)")
    add_image_argument(p)
    p.add_argument("--eye", type=numbers, help="the eye: x,y normalised")
    p.add_argument("--face", type=numbers, help="the face box x1,y1,x2,y2 (needed by --prioritize-accuracy)")
    p.add_argument("--prioritize-accuracy", action="store_true", help="20 asks in the face box, outliers dropped")
    p.add_argument("--force-detect", action="store_true", help="always decode a point, even where the model stops")
    p.add_argument("--seed", type=int, help="seed of --prioritize-accuracy's eye positions")
    p.add_argument("--out", help="also write the image with the eye and gaze drawn on it (PNG)")
    add_variant_arguments(p)
    add_model_arguments(p)
    add_quant_arguments(p)

    p = sub.add_parser("info", help="model, profile, parameters, device")
    add_model_arguments(p)
    add_quant_arguments(p)

    p = sub.add_parser(
        "batch", help="caption, query, detect or point every image of a folder, glob or manifest (resumable)"
    )
    p.add_argument(
        "source",
        help="a folder (searched recursively), a glob such as 'photos/*.jpg', or a JSONL/parquet "
        "manifest with an image path column and optional question/object columns; local or a URI (s3://…)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="JSONL file (with --ray: a folder of shards); a rerun skips the images already in it",
    )
    task = p.add_mutually_exclusive_group()
    task.add_argument("--question", help="ask this question of every image (default: caption them)")
    task.add_argument("--detect", metavar="OBJECT", help="detect this object in every image")
    task.add_argument("--point", metavar="OBJECT", help="point at this object in every image")
    p.add_argument("--length", default="normal", choices=["short", "normal", "long"])
    p.add_argument("--batch-size", type=int, default=8, help="images decoded together (default 8)")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--max-objects", type=int)
    p.add_argument("--image-column", default="image", help="a manifest's image path column (default: image)")
    p.add_argument("--key-column", help="a manifest's unique key column (default: the image path)")
    from .scale.cli import add_ray_batch_args

    add_ray_batch_args(p)
    add_model_arguments(p)
    add_quant_arguments(p)

    p = sub.add_parser("download", help="fetch a model's safetensors and JSON files into the Hugging Face cache")
    p.add_argument("model", help="hub id, e.g. vikhyatk/moondream2")
    p.add_argument("--revision", help="tag, branch or commit (default: the newest supported revision)")

    for module, (adder, _) in DELEGATED.values():
        getattr(importlib.import_module(module), adder)(sub)
    return parser


# Subcommands that live in their own packages: name → (module, (parser adder, runner)).
DELEGATED = {
    "train": ("moonlet.train.cli", ("add_train_parser", "run_train")),
    "data": ("moonlet.data.cli", ("add_data_parser", "run_data")),
    "eval": ("moonlet.eval.cli", ("add_eval_parser", "run_eval")),
    "serve": ("moonlet.server.cli", ("add_serve_parser", "run_serve")),
    "bench": ("moonlet.bench.cli", ("add_bench_parser", "run_bench")),
    "variant": ("moonlet.variants.cli", ("add_variant_parser", "run_variant")),
}


def _read_image(arg: str):
    return sys.stdin.buffer.read() if arg == "-" else Path(arg)


def _print_text(result, key: str, stream: bool, as_json: bool) -> None:
    value = result[key]
    if stream and not as_json:
        for piece in value:
            print(piece, end="", flush=True)
        print()
        return
    text = value if isinstance(value, str) else "".join(value)
    print(json.dumps({**result, key: text}) if as_json else text)


def run(args: argparse.Namespace) -> int:
    import moonlet

    from .quant import plan_for, tensor_bytes
    from .quant.formats import weight_formats

    if args.command in DELEGATED:
        module, (_, runner) = DELEGATED[args.command]
        return getattr(importlib.import_module(module), runner)(args)
    if args.command == "download":
        from .checkpoints.loading import resolve_hub

        resolved = resolve_hub(args.model, args.revision)  # huggingface_hub shows its progress bars
        print(resolved.weights[0].parent)
        return 0
    if args.command == "batch" and args.ray:
        from .scale.cli import run_ray_batch

        if quant_choice(args):
            print(
                "moonlet: error: --quant is not supported with --ray (each worker loads the model itself)",
                file=sys.stderr,
            )
            return 2
        return run_ray_batch(args)  # each worker loads the model itself
    allow = getattr(args, "allow_network", False)
    model = moonlet.load(
        args.model,
        revision=args.revision,
        device=args.device,
        dtype=args.dtype,
        allow_network=allow,
        **quant_choice(args),
    )
    if args.command == "info":
        info = {
            "model": model.name,
            "profile": model.config.profile,
            "parameters": model.model.num_parameters(),
            "device": str(model.model.device),
            "dtype": str(model.model.dtype).removeprefix("torch."),
            "weights_bytes": tensor_bytes(model.model),
            "weight_formats": weight_formats(model.model),
            "kernel_plan": plan_for(device=model.model.device).as_dict(),
            "peak_rss_bytes": _peak_rss(),
        }
        print(json.dumps(info, indent=1))
        return 0
    if args.command == "batch":
        from .batch.runner import run_batch

        return run_batch(model, args)
    image = _read_image(args.image)
    if args.command == "caption":
        settings = option_settings(args, sampling_settings(args))
        _print_text(model.caption(image, args.length, args.stream, settings), "caption", args.stream, args.json)
    elif args.command == "query":
        settings = option_settings(args, sampling_settings(args))
        result = model.query(image, args.question, args.reasoning, args.ref, stream=args.stream, settings=settings)
        if args.reasoning and not args.json:
            print(f"Reasoning: {result['reasoning']['text']}")
        _print_text(result, "answer", args.stream, args.json)
    elif args.command == "gaze":
        unstable = {"prioritize_accuracy": args.prioritize_accuracy, "force_detect": args.force_detect}
        seed = {"seed": args.seed} if args.seed is not None else None
        result = model.detect_gaze(image, args.eye, args.face, unstable, option_settings(args, seed))
        print(json.dumps(result))
        if args.out and result["gaze"] is not None and args.eye:
            eye = {"x": args.eye[0], "y": args.eye[1]}
            draw_results(image, {"points": [eye, result["gaze"]]}, args.out)
    else:
        settings = {"max_objects": args.max_objects} if args.max_objects else None
        settings = option_settings(args, settings)
        call = model.detect if args.command == "detect" else model.point
        key = "objects" if args.command == "detect" else "points"
        result = call(image, args.object, settings=settings)
        print(json.dumps(result) if args.json else "\n".join(json.dumps(r) for r in result[key]))
        if args.out:
            draw_results(image, result, args.out)
    return 0


def _peak_rss() -> int | None:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def draw_results(image, result: dict, out: str) -> None:
    """Save the image with boxes (detect) or dots (point) drawn in normalised coordinates."""
    from PIL import ImageDraw

    from .image import load_image, to_rgb

    canvas = to_rgb(load_image(image)).copy()
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    line = max(2, round(min(width, height) / 150))
    for box in result.get("objects", []):
        xy = (box["x_min"] * width, box["y_min"] * height, box["x_max"] * width, box["y_max"] * height)
        draw.rectangle(xy, outline=(255, 40, 90), width=line)
    for point in result.get("points", []):
        x, y, r = point["x"] * width, point["y"] * height, 2 * line
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 40, 90), outline=(255, 255, 255))
    canvas.save(out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .checkpoints.loading import ModelNotFoundError
    from .checkpoints.weights import WeightsError
    from .config import ConfigError
    from .generation.sampling import SettingsError
    from .image import ImageError
    from .prompts import PromptError
    from .spatial import SpatialRefError
    from .variants import VariantError

    try:
        return run(args)
    except (
        ImageError,
        ModelNotFoundError,
        ConfigError,
        WeightsError,
        PromptError,
        SettingsError,
        SpatialRefError,
        VariantError,
        FileNotFoundError,
    ) as exc:
        print(f"moonlet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
