"""Command-line arguments shared by every sub-command (model selection, sampling, images) and
argparse validators. One home, so that each flag reads and behaves the same everywhere."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MODEL_HELP = "checkpoint directory, .safetensors file or hub id (default: the embedded model)"
SAMPLING_NAMES = ("max_tokens", "temperature", "top_p", "seed")


def add_model_arguments(parser, model_help: str = MODEL_HELP) -> None:
    """``--model --revision --device --dtype``: what ``moonlet.load`` takes."""
    parser.add_argument("--model", help=model_help)
    parser.add_argument("--revision", help="hub revision (tag, branch or commit)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    parser.add_argument(
        "--dtype",
        help="float32, bfloat16 or float16 (default: the kernel plan's: bf16 on GPU and native-bf16 CPUs)",
    )


def add_quant_arguments(parser) -> None:
    """``--quant --quant-parts``: int8 / int4 weights, quantised while loading (``moonlet.load(quant=...)``)."""
    parser.add_argument("--quant", choices=["none", "int8", "int4"], default="none", help="quantise weights")
    parser.add_argument(
        "--quant-parts", type=parts_list, default=("text",), help="parts to quantise: text,vision,region"
    )


def parts_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated model parts."""
    parts = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = set(parts) - {"text", "vision", "region"}
    if not parts or unknown:
        raise argparse.ArgumentTypeError(f"parts are text, vision and region, comma-separated; got {text!r}")
    return parts


def quant_choice(args: argparse.Namespace) -> dict:
    """``moonlet.load`` keywords from ``--quant --quant-parts``."""
    quant = getattr(args, "quant", "none")
    return {} if quant in (None, "none") else {"quant": quant, "quant_parts": args.quant_parts}


def add_sampling_arguments(parser) -> None:
    """``--max-tokens --temperature --top-p --seed``; read back with :func:`sampling_settings`."""
    parser.add_argument("--max-tokens", type=positive_int, help="most tokens to generate (profile default: 768)")
    parser.add_argument("--temperature", type=float, help="0 for greedy (profile default: 0.5)")
    parser.add_argument("--top-p", type=float, help="nucleus sampling mass (profile default: 0.3)")
    parser.add_argument("--seed", type=int, help="seed for reproducible sampling")


def sampling_settings(args: argparse.Namespace) -> dict | None:
    """The sampling flags the user set, as a ``settings`` dict (None when none was set)."""
    settings = {name: getattr(args, name) for name in SAMPLING_NAMES if getattr(args, name, None) is not None}
    return settings or None


def add_variant_arguments(parser) -> None:
    """``--variant --allow-network``: a LoRA variant for ``settings["variant"]`` (see :func:`option_settings`)."""
    parser.add_argument("--variant", help="LoRA variant: an adapter file (.safetensors or .pt) or a hosted variant id")
    parser.add_argument(
        "--allow-network", action="store_true", help="let a hosted variant be downloaded from Moondream's API"
    )


def add_schema_argument(parser) -> None:
    """``--json-schema FILE``: the reply must be JSON matching the schema in FILE."""
    parser.add_argument(
        "--json-schema", type=json_file, metavar="FILE", help="reply with JSON matching the JSON schema in FILE"
    )


def json_file(path: str) -> dict:
    """argparse type: a file holding one JSON object."""
    try:
        value = json.loads(Path(path).read_text())
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{path} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{path} must hold a JSON object (a schema), not {type(value).__name__}")
    return value


def option_settings(args: argparse.Namespace, settings: dict | None) -> dict | None:
    """``settings`` with the ``--variant`` and ``--json-schema`` the user set, if any."""
    chosen = {name: getattr(args, name, None) for name in ("variant", "json_schema")}
    chosen = {name: value for name, value in chosen.items() if value is not None}
    return {**(settings or {}), **chosen} if chosen else settings


def numbers(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated numbers, e.g. ``0.4,0.35``."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.4,0.35, got {text!r}") from None


def add_image_argument(parser) -> None:
    parser.add_argument("image", help="image path, or - to read the image from standard input")


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer ≥ 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a number ≥ 0."""
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value:g}")
    return value
