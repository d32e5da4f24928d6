"""Checkpoint reading and writing: safetensors only, both official layouts, strict checks.

Layout B (2025 releases) names tensors ``model.vision.* / model.text.* / model.region.*``, which
are our parameter names with a ``model.`` prefix. Layout A (2024 releases, the original code)
uses ``vision_encoder.* / text_model.* / region_model.*``; it maps onto ours by renaming, with
the two Fourier frequency matrices transposed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..quant.quantize import trim_heap

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
COMPILE_INFIX = "._orig_mod"

# (layout A pattern, our name template, transposed)
LAYOUT_A_RULES: tuple[tuple[str, str, bool], ...] = (
    (r"vision_encoder\.encoder\.model\.visual\.patch_embed\.linear\.(weight|bias)", r"vision.patch_emb.\1", False),
    (r"vision_encoder\.encoder\.model\.visual\.pos_embed", r"vision.pos_emb", False),
    (
        r"vision_encoder\.encoder\.model\.visual\.blocks\.(\d+)\.norm([12])\.(weight|bias)",
        r"vision.blocks.\1.ln\2.\3",
        False,
    ),
    (
        r"vision_encoder\.encoder\.model\.visual\.blocks\.(\d+)\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)",
        r"vision.blocks.\1.\2.\3",
        False,
    ),
    (r"vision_encoder\.encoder\.model\.visual\.norm\.(weight|bias)", r"vision.post_ln.\1", False),
    (r"vision_encoder\.projection\.mlp\.(fc1|fc2)\.(weight|bias)", r"vision.proj_mlp.\1.\2", False),
    (r"text_model\.transformer\.embd\.wte\.weight", r"text.wte", False),
    (r"text_model\.transformer\.h\.(\d+)\.ln\.(weight|bias)", r"text.blocks.\1.ln.\2", False),
    (r"text_model\.transformer\.h\.(\d+)\.mixer\.Wqkv\.(weight|bias)", r"text.blocks.\1.attn.qkv.\2", False),
    (r"text_model\.transformer\.h\.(\d+)\.mixer\.out_proj\.(weight|bias)", r"text.blocks.\1.attn.proj.\2", False),
    (r"text_model\.transformer\.h\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"text.blocks.\1.mlp.\2.\3", False),
    (r"text_model\.lm_head\.ln\.(weight|bias)", r"text.post_ln.\1", False),
    (r"text_model\.lm_head\.linear\.(weight|bias)", r"text.lm_head.\1", False),
    (r"region_model\.coordinate_features\.weight", r"region.coord_features", True),
    (r"region_model\.size_features\.weight", r"region.size_features", True),
    (r"region_model\.coordinate_(encoder|decoder)\.(.+)", r"region.coord_\1.\2", False),
    (r"region_model\.size_(encoder|decoder)\.(.+)", r"region.size_\1.\2", False),
)
_COMPILED_A_RULES = tuple((re.compile(p + r"\Z"), t, tr) for p, t, tr in LAYOUT_A_RULES)


class WeightsError(ValueError):
    """A checkpoint that cannot be loaded into the model."""


def refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise WeightsError(
            f"{path.name}: pickle checkpoints ({', '.join(PICKLE_SUFFIXES)}) can run arbitrary code "
            "when loaded, so moonlet refuses them. Use the .safetensors file of the release, or convert "
            "a trusted file once with safetensors.torch.save_file."
        )


def target_name(name: str) -> tuple[str, bool] | None:
    """Our parameter name for a checkpoint tensor name, and whether to transpose it.

    Returns None for a name that belongs to no known layout.
    """
    name = name.replace(COMPILE_INFIX, "")
    if name.startswith("model."):
        return name[len("model.") :], False
    for pattern, template, transposed in _COMPILED_A_RULES:
        match = pattern.match(name)
        if match:
            return match.expand(template), transposed
    return None


def checkpoint_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint file or directory (sharded indexes included)."""
    path = Path(path)
    if path.is_file():
        refuse_pickle(path)
        if path.suffix != ".safetensors":
            raise WeightsError(f"{path}: not a .safetensors file")
        return [path]
    if not path.is_dir():
        raise WeightsError(f"checkpoint not found: {path}")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        import json

        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [path / shard for shard in shards]
    files = sorted(path.glob("*.safetensors"))
    if files:
        return files
    pickles = [p for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        refuse_pickle(pickles[0])
    raise WeightsError(f"no .safetensors file in {path}")


def read_checkpoint(
    files: Iterable[Path],
    expected: Mapping[str, torch.Size],
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    skip_prefixes: tuple[str, ...] = (),
    consume: Callable[[str, torch.Tensor], bool] | None = None,
) -> dict[str, torch.Tensor]:
    """Read tensors into our names, checked against ``expected`` shapes (strict).

    Tensors whose checkpoint name starts with one of ``skip_prefixes`` belong to a part the
    config leaves out (the unused early region model of 2024-08-26) and are not read.

    Each tensor is read from the memory-mapped file and converted to ``device``/``dtype`` before
    the next is read, so at most one extra tensor exists besides the result. ``consume(name,
    tensor)``, when given, sees each checked tensor first (on ``device``, in its stored dtype); one
    it returns True for is its own (e.g. quantised on the spot) and is left out of the result.
    """
    state: dict[str, torch.Tensor] = {}
    consumed: set[str] = set()
    unexpected: list[str] = []
    mis_shaped: list[str] = []
    bad_dtype: list[str] = []
    for file in files:
        for name, handle in _windowed(file):
            if name.startswith(skip_prefixes):
                continue
            mapped = target_name(name)
            if mapped is None or mapped[0] not in expected:
                unexpected.append(name)
                continue
            target, transposed = mapped
            try:
                tensor = handle.get_tensor(name)
            except (SafetensorError, OSError, ValueError) as exc:
                raise WeightsError(f"{file}: tensor {name} cannot be read ({exc})") from None
            if not tensor.is_floating_point():
                bad_dtype.append(f"{name} ({tensor.dtype})")
                continue
            if transposed:
                tensor = tensor.t()
            if tensor.shape != expected[target]:
                mis_shaped.append(f"{name}: file {tuple(tensor.shape)} vs model {tuple(expected[target])}")
                continue
            tensor = tensor.to(device=device)
            if consume is not None and consume(target, tensor):
                consumed.add(target)
            else:
                state[target] = tensor.to(dtype=dtype or tensor.dtype).contiguous()
            del tensor
    missing = sorted(set(expected) - set(state) - consumed - {_strip(n) for n in mis_shaped + bad_dtype})
    problems = []
    if missing:
        problems.append(f"missing tensors ({len(missing)}): {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors ({len(unexpected)}): {_preview(unexpected)}")
    if mis_shaped:
        problems.append(f"wrong shapes ({len(mis_shaped)}): {_preview(mis_shaped)}")
    if bad_dtype:
        problems.append(f"non-float tensors (quantised checkpoints are not supported): {_preview(bad_dtype)}")
    if problems:
        names = ", ".join(str(f) for f in files)
        raise WeightsError(f"checkpoint {names} does not match the model config:\n  " + "\n  ".join(problems))
    return state


MAP_WINDOW = 64 << 20  # bytes read through one mapping of a file before it is opened afresh
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _windowed(file: Path):
    """(name, handle) for every tensor of ``file``, largest first. The file is mapped afresh every
    ``MAP_WINDOW`` bytes: pages of a mapping stay resident while it is open, so one mapping for a
    whole 4 GB file would hold it all in memory beside the converted (or quantised) weights."""
    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            sizes = {}
            for name in handle.keys():
                piece = handle.get_slice(name)
                sizes[name] = math.prod(piece.get_shape()) * DTYPE_BYTES.get(piece.get_dtype(), 8)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{file}: not a readable safetensors file ({exc})") from None
    # largest first: a tensor's conversion (or quantisation) needs room beside what is already
    # built, so the big ones go while little is, and the peak stays near the built model's size
    names = sorted(sizes, key=sizes.get, reverse=True)
    while names:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            read = 0
            while names and read < MAP_WINDOW:
                name = names.pop(0)
                yield name, handle
                read += sizes[name]
        trim_heap()  # the window's freed conversions (freed by reference counts: no collection needed)


def _strip(entry: str) -> str:
    mapped = target_name(entry.split(" ")[0].rstrip(":"))
    return mapped[0] if mapped else entry


def _preview(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def save_checkpoint(state: Mapping[str, torch.Tensor], path: Path, dtype: torch.dtype | None = None) -> None:
    """Write our parameters in layout B (``model.`` prefix), the layout of current releases."""
    tensors = {f"model.{name}": (t.to(dtype) if dtype else t).contiguous().cpu() for name, t in state.items()}
    save_file(tensors, str(path), metadata={"format": "pt", "producer": "moonlet"})
