"""``moonlet variant convert IN.pt OUT.safetensors``: an official variant pickle as safetensors."""

from __future__ import annotations

import argparse


def add_variant_parser(sub) -> None:
    p = sub.add_parser("variant", help="LoRA variant files")
    actions = p.add_subparsers(dest="variant_command", required=True)
    convert = actions.add_parser("convert", help="write a variant's final.pt (read weights-only) as safetensors")
    convert.add_argument("source", help="the .pt file, e.g. a hosted variant's final.pt")
    convert.add_argument("target", help="the .safetensors file to write")
    convert.add_argument("--check-model", help="also check that the adapter fits this model (path or hub id)")


def run_variant(args: argparse.Namespace) -> int:
    from .files import convert_pt, read_adapter

    target = convert_pt(args.source, args.target)  # a VariantError is a usage error (exit 2) in moonlet.cli
    if args.check_model:
        import moonlet

        read_adapter(target, target.stem, moonlet.load(args.check_model, device="cpu").config.text)
    print(target)
    return 0
