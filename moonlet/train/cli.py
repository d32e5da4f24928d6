"""``moonlet train``: from scratch for small configs, or fine-tuning a checkpoint."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import fields, replace
from pathlib import Path

import torch

from .options import MODES, TrainConfig

EXAMPLES = """examples:
  moonlet train --data scenes/ --out runs/nano --profile moonlet-nano --steps 20000 --batch-size 16
  moonlet train --data easy-scenes/ scenes/ --out runs/mix --init runs/nano/model --steps 4000
  moonlet train --data mine.jsonl --out runs/ft --init vikhyatk/moondream2 --mode lora --steps 500
  torchrun --nproc_per_node 8 -m moonlet train --data scenes/ --out runs/nano --profile moonlet-nano
  moonlet train ... --resume          # continue the latest checkpoint in --out exactly
"""


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train from scratch or fine-tune",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", required=True, nargs="+", help="dataset directories or JSONL files, used together (docs/data.md)"
    )
    p.add_argument("--out", required=True, help="run directory: checkpoints, metrics.jsonl, model/")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", help="checkpoint to fine-tune (directory, file or hub id)")
    start.add_argument("--profile", help="train a new model of this profile's architecture, e.g. moonlet-nano")
    p.add_argument("--revision", help="hub revision of --init")
    p.add_argument("--tokenizer", help="tokenizer.json for a new model (default: train one on --data)")
    p.add_argument("--vocab-size", type=int, default=2048, help="size of a newly trained tokenizer")
    p.add_argument("--mode", choices=MODES, default="full", help="what to train (default: everything)")
    p.add_argument("--device", help="cpu or cuda[:N] (under torchrun: cuda:LOCAL_RANK)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--export-dtype", default="float16", help="dtype of the exported model/ (default float16)")
    for field in fields(TrainConfig):
        if field.name in ("data", "out", "mode", "progress"):
            continue
        name = "--" + field.name.replace("_", "-")  # field.type is a string (postponed annotations)
        kind = float if "float" in field.type else int if "int" in field.type else str
        p.add_argument(name, type=kind, default=None, help=f"default: {field.default}")
    return p


def _train_config(args) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    return TrainConfig(**values)


def _new_model(args, device: torch.device):
    from ..data.reader import iter_rows
    from ..modeling.init import build_random
    from ..profiles import get_profile
    from ..tokenizer import Tokenizer
    from .tokenizer_train import row_texts, tokenizer_config_for, train_tokenizer

    base = get_profile(args.profile)
    if args.tokenizer:
        tokenizer = Tokenizer.from_file(args.tokenizer)
    else:
        rows = (row for path in args.data for row in iter_rows(path, check_images=False))
        tokenizer = train_tokenizer(row_texts(rows), args.vocab_size)
    vocab = math.ceil(tokenizer.backend.get_vocab_size() / 64) * 64
    config = replace(
        base,
        text=replace(base.text, vocab_size=vocab),
        tokenizer=tokenizer_config_for(tokenizer, base.tokenizer),
    )
    seed = args.seed if args.seed is not None else 0
    return build_random(config, device=device, seed=seed), tokenizer


def run_train(args) -> int:
    import moonlet

    from .trainer import Trainer

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    default = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device or default)
    config = _train_config(args)
    resuming = args.resume and (Path(args.out) / "latest").is_file()
    state = Path(config.state_dir) if config.state_dir else None
    if args.init:
        loaded = moonlet.load(args.init, revision=args.revision, device=device, dtype="float32")
        model, tokenizer = loaded.model, loaded.tokenizer
    elif resuming and (Path(args.out) / "init").is_dir():
        loaded = moonlet.load(
            Path(args.out) / "init", device=device, dtype="float32"
        )  # same architecture and tokenizer
        model, tokenizer = loaded.model, loaded.tokenizer
    elif args.resume and state is not None and (state / "config.json").is_file():
        model, tokenizer = _model_of_state(state, device)  # its weights come from the state when fit() resumes
    else:
        model, tokenizer = _new_model(args, device)
        if state is not None and int(os.environ.get("RANK", 0)) == 0:
            _describe_state(state, model, tokenizer)
    trainer = Trainer(model, tokenizer, config)
    if args.profile and trainer.is_main and not (Path(args.out) / "init").is_dir():
        from ..checkpoints.save import save_pretrained
        from .trainer import ModelWithTokenizer

        save_pretrained(ModelWithTokenizer(model, tokenizer), Path(args.out) / "init")
    trainer.fit(resume=args.resume)
    if trainer.stopped_early:
        if trainer.is_main:
            print(
                f"stopped after {config.stop_after_min:g} minutes at step {trainer.step} of {config.steps}; "
                "run the same command again to continue",
                flush=True,
            )
        return STOPPED_EARLY
    trainer.save()
    exported = trainer.export(dtype=_dtype(args.export_dtype))
    if exported is not None:
        print(f"model written to {exported}")
    return 0


STOPPED_EARLY = 3  # exit status of a run stopped by --stop-after-min (resumable, not finished)


def _describe_state(state: Path, model, tokenizer) -> None:
    """Write the architecture and tokenizer beside a state directory's weights, so a fresh machine
    can rebuild the model before resuming."""
    import json

    from ..checkpoints.config_json import config_to_dict

    state.mkdir(parents=True, exist_ok=True)
    (state / "config.json").write_text(
        json.dumps({"model_type": "moondream1", "config": config_to_dict(model.config)}, indent=1)
    )
    tokenizer.backend.save(str(state / "tokenizer.json"))


def _model_of_state(state: Path, device: torch.device):
    import json

    from ..checkpoints.config_json import config_from_json
    from ..modeling.init import build_random
    from ..tokenizer import Tokenizer

    config = config_from_json(json.loads((state / "config.json").read_text()))
    return build_random(config, device=device), Tokenizer.from_file(state / "tokenizer.json")


def _dtype(name: str) -> torch.dtype:
    from ..checkpoints.loading import parse_dtype

    return parse_dtype(name, torch.float16)
