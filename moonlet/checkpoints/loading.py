"""Finding a checkpoint (local path, Hugging Face hub id or the embedded model) and building the model.

Only ``*.safetensors`` and JSON files are ever fetched or read; nothing from a checkpoint is
executed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ConfigError, MoondreamConfig
from ..modeling.model import MoondreamModel
from ..profiles import DEFAULT_PROFILE, profile_for_revision
from ..quant.dispatch import KernelPlan, plan_for
from ..quant.formats import LOOKUP_TABLES, QuantisingReader, linear_targets, load_formats
from ..tokenizer import Tokenizer
from .config_json import config_from_json
from .weights import WeightsError, checkpoint_files, read_checkpoint, refuse_pickle

EMBEDDED_DIR = Path(__file__).resolve().parents[1] / "assets"
EMBEDDED_MODEL = "moonlet-nano"
DEFAULT_HUB_REVISION = {"vikhyatk/moondream2": DEFAULT_PROFILE}
HUB_ALLOW_PATTERNS = ["*.safetensors", "*.json"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_REVISION = re.compile(r"^[\w.-]+$")

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


class ModelNotFoundError(FileNotFoundError):
    """The named model cannot be found locally or fetched."""


@dataclass(frozen=True)
class ResolvedCheckpoint:
    weights: list[Path]
    config_file: Path | None
    tokenizer_file: Path | None
    revision: str | None


def parse_dtype(dtype: str | torch.dtype | None, default: torch.dtype) -> torch.dtype:
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}") from None


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(config: MoondreamConfig, device: torch.device, plan: KernelPlan | None = None) -> torch.dtype:
    """The checkpoint's dtype on GPU. On CPU: bfloat16 where the CPU computes it natively and the
    checkpoint stores it; float32 otherwise (half precision is slow there, or would narrow the weights)."""
    if device.type == "cuda":
        return DTYPES[config.dtype]
    plan = plan or plan_for(device=device)
    return torch.bfloat16 if plan.dtype.value == "bfloat16" and config.dtype == "bfloat16" else torch.float32


def is_hub_id(name: str) -> bool:
    return bool(_REPO_ID.match(name)) and not Path(name).exists()


def resolve_local(path: Path, revision: str | None = None) -> ResolvedCheckpoint:
    refuse_pickle(path)
    directory = path if path.is_dir() else path.parent
    config = directory / "config.json"
    tokenizer = directory / "tokenizer.json"
    return ResolvedCheckpoint(
        weights=checkpoint_files(path),
        config_file=config if config.is_file() else None,
        tokenizer_file=tokenizer if tokenizer.is_file() else None,
        revision=revision,
    )


def resolve_hub(repo_id: str, revision: str | None) -> ResolvedCheckpoint:
    """Download (or find in the local cache) the safetensors and JSON files of a hub repo."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    revision = revision or DEFAULT_HUB_REVISION.get(repo_id)
    if revision is not None and not _REVISION.match(revision):
        raise ValueError(f"invalid revision {revision!r}: use a tag, branch or commit hash")
    try:
        directory = snapshot_download(repo_id, revision=revision, allow_patterns=HUB_ALLOW_PATTERNS)
    except LocalEntryNotFoundError:
        raise ModelNotFoundError(
            f"{repo_id} (revision {revision or 'main'}) is not in the local Hugging Face cache and the hub "
            "cannot be reached (HF_HUB_OFFLINE is set or there is no network). Download it on a connected "
            f"machine first (`moonlet download {repo_id}`), or pass a local checkpoint directory."
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise ModelNotFoundError(f"{repo_id} at revision {revision or 'main'}: {exc}") from None
    return resolve_local(Path(directory), revision)


def resolve(model: str | os.PathLike | None, revision: str | None = None) -> ResolvedCheckpoint:
    if model is None:
        embedded = EMBEDDED_DIR / EMBEDDED_MODEL
        if not (embedded / "model.safetensors").is_file():
            raise ModelNotFoundError(
                f"this build of moonlet has no embedded model ({EMBEDDED_MODEL}); name one: "
                "moonlet.load('vikhyatk/moondream2') or moonlet.load('/path/to/checkpoint_dir')"
            )
        return resolve_local(embedded)
    path = Path(model).expanduser()
    if path.exists():
        return resolve_local(path, revision)
    if is_hub_id(str(model)):
        return resolve_hub(str(model), revision)
    raise ModelNotFoundError(f"{model}: no such file or directory, and not a hub id of the form owner/name")


def read_config(resolved: ResolvedCheckpoint, config: MoondreamConfig | dict | None) -> MoondreamConfig:
    profile = profile_for_revision(resolved.revision)
    if isinstance(config, MoondreamConfig):
        return config.validate()
    if isinstance(config, dict):
        return config_from_json(config, profile)
    if resolved.config_file is None:
        raise ConfigError(f"no config.json beside {resolved.weights[0]}; pass config= explicitly")
    try:
        data = json.loads(resolved.config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{resolved.config_file}: invalid JSON ({exc})") from None
    return config_from_json(data, profile)


def build_model(
    config: MoondreamConfig,
    weights: list[Path],
    device: torch.device,
    dtype: torch.dtype,
    formats: dict[str, str] | None = None,
    group_size: int = 128,
    narrow: tuple[str, ...] = (),
) -> MoondreamModel:
    """Build the module tree without allocating, then assign the checkpoint's tensors; the linear
    layers of the parts in ``formats`` (part → fp16 / int8 / int4) are built quantised as they are read,
    and the tensors named in ``narrow`` keep a stored dtype narrower than ``dtype``."""
    with torch.device("meta"):
        model = MoondreamModel(config)
    expected = {name: p.shape for name, p in model.named_parameters()}
    # a revision without a region model ignores region tensors its checkpoint may carry
    skip = () if config.region.enabled else ("region_model.", "model.region.")
    reader = QuantisingReader(linear_targets(model, formats or {}, group_size), group_size, dtype=dtype, narrow=narrow)
    state = read_checkpoint(weights, expected, device=device, dtype=dtype, skip_prefixes=skip, consume=reader)
    reader.install(model, state)
    model.load_state_dict(state, strict=not reader.targets, assign=True)  # read_checkpoint checked every name
    model.init_buffers(device)
    return model.eval().requires_grad_(False)


def load_model(
    model: str | os.PathLike | None = None,
    revision: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    config: MoondreamConfig | dict | None = None,
    quant: str | None = None,
    quant_parts=("text",),
) -> tuple[MoondreamModel, Tokenizer | None, ResolvedCheckpoint]:
    """The model, its tokenizer and where they came from. The dtype and kernels follow the CPU's
    plan (``moonlet.quant.dispatch``) unless ``dtype`` is given; ``quant`` (int8 / int4) quantises
    ``quant_parts`` tensor by tensor as they are read."""
    resolved = resolve(model, revision)
    model_config = read_config(resolved, config)
    device = torch.device(device) if device is not None else default_device()
    try:
        net = build_planned(model_config, resolved.weights, device, dtype, quant, quant_parts)
    except WeightsError as exc:
        raise WeightsError(
            f"{exc}\n  (config: {resolved.config_file or 'given'}, profile {model_config.profile})"
        ) from None
    return net, load_tokenizer(resolved, model_config), resolved


def build_planned(
    config: MoondreamConfig,
    weights: list[Path],
    device: torch.device,
    dtype: str | torch.dtype | None = None,
    quant: str | None = None,
    quant_parts=("text",),
) -> MoondreamModel:
    """``build_model`` with the dtype and weight formats of the device's kernel plan (``dtype`` and
    ``quant`` as the user gave them; an explicit ``dtype`` applies to every tensor, lookup tables too)."""
    plan = plan_for(device=device)
    formats = load_formats(plan, config.dtype, dtype is not None, quant, quant_parts)
    narrow = LOOKUP_TABLES if dtype is None else ()
    compute = parse_dtype(dtype, default_dtype(config, device, plan))
    return build_model(config, weights, device, compute, formats, narrow=narrow)


def load_tokenizer(resolved: ResolvedCheckpoint, config: MoondreamConfig) -> Tokenizer | None:
    """The checkpoint's ``tokenizer.json``, unless its end-of-text id contradicts the profile.

    2025 releases keep the old GPT-2 tokenizer files in the repo while the model uses the
    profile's own tokenizer (``tokenizer.hub_repo``), as the reference code does.
    """
    local = Tokenizer.from_file(resolved.tokenizer_file) if resolved.tokenizer_file else None
    endoftext = local.token_id("<|endoftext|>") if local else None
    if local is not None and (endoftext is None or endoftext == config.tokenizer.bos_id):
        return local
    repo = config.tokenizer.hub_repo
    if repo is None:
        return local
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Tokenizer.from_file(hf_hub_download(repo, "tokenizer.json"))
    except LocalEntryNotFoundError:
        raise ModelNotFoundError(
            f"the {config.profile} profile uses the tokenizer of {repo}, which is not in the local "
            "Hugging Face cache and the hub cannot be reached; download it once on a connected machine "
            "or pass tokenizer= explicitly"
        ) from None
