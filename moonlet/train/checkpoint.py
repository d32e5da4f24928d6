"""Training checkpoints in safetensors: trainable weights, optimizer state and RNG state.

Nothing is pickled: the optimizer state is flattened into named tensors, its hyper-parameters
go to JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

LATEST = "latest"


def save_training_state(
    directory: Path,
    params: Mapping[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    step: int,
    extra: dict,
    moments_dtype: torch.dtype | None = None,
    pointer: bool = True,
) -> Path:
    """``params``: every parameter of the run by name (the model's, and any training-only head's).
    ``moments_dtype``: store the optimizer's moments in this dtype (e.g. bfloat16 for a compact
    copy kept in a repository; weights stay float32). ``pointer``: make this the run's latest."""
    directory.mkdir(parents=True, exist_ok=True)
    names = {id(p): n for n, p in params.items()}
    trainable = {n: p.detach().contiguous().cpu() for n, p in params.items() if p.requires_grad}
    save_file(trainable, str(directory / "trainable.safetensors"))
    tensors = {"rng.torch": torch.get_rng_state()}
    groups = []
    for group in optimizer.param_groups:
        groups.append(
            {k: v for k, v in group.items() if k != "params"} | {"params": [names[id(p)] for p in group["params"]]}
        )
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                value = torch.as_tensor(value).detach()
                if moments_dtype is not None and key != "step" and value.is_floating_point():
                    value = value.to(moments_dtype)
                tensors[f"{names[id(p)]}::{key}"] = value.contiguous().cpu()
    save_file(tensors, str(directory / "optimizer.safetensors"))
    (directory / "trainer_state.json").write_text(json.dumps({"step": step, "param_groups": groups, **extra}, indent=1))
    if pointer:
        (directory.parent / LATEST).write_text(directory.name)
    return directory


def has_training_state(directory: Path) -> bool:
    return (directory / "trainer_state.json").is_file()


def latest_checkpoint(out: Path) -> Path | None:
    pointer = out / LATEST
    return out / pointer.read_text().strip() if pointer.is_file() else None


def load_training_state(
    directory: Path,
    params: Mapping[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    may_be_new: Callable[[str], bool] = lambda name: False,
) -> dict:
    """Restore weights, optimizer and RNG in place; returns the trainer state (with ``step``).

    Parameters the checkpoint lacks are an error unless ``may_be_new(name)`` (e.g. a training-only
    head added to a resumed run): those keep their fresh values and start with empty optimizer
    state. Optimizer groups are matched by name, so such a parameter may join a saved group."""
    trainable = load_file(str(directory / "trainable.safetensors"))
    missing = sorted(n for n, p in params.items() if p.requires_grad and n not in trainable)
    unknown = sorted(set(trainable) - set(params))
    refused = [n for n in missing if not may_be_new(n)]
    if refused or unknown:
        raise ValueError(
            f"checkpoint {directory} does not fit this run: missing {refused[:5]}, unexpected {unknown[:5]}"
        )
    with torch.no_grad():
        for name, tensor in trainable.items():
            params[name].copy_(tensor)
    state = json.loads((directory / "trainer_state.json").read_text())
    tensors = load_file(str(directory / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("rng.torch"))
    names = {id(p): n for n, p in params.items()}
    saved_groups = {group["name"]: group for group in state["param_groups"]}
    index: dict[str, int] = {}
    groups = []
    for group in optimizer.param_groups:  # this run's groups, with the saved hyper-parameters
        members = [names[id(p)] for p in group["params"]]
        saved = saved_groups.get(group.get("name"))
        if saved is None and not all(n in missing for n in members):
            raise ValueError(f"checkpoint {directory} has no optimizer group {group.get('name')!r}")
        settings = {k: v for k, v in (saved or group).items() if k != "params"}
        groups.append(settings | {"params": [index.setdefault(n, len(index)) for n in members]})
    per_param: dict[int, dict] = {}
    for key, tensor in tensors.items():
        name, field = key.split("::")
        if name not in index:
            raise ValueError(f"checkpoint {directory} has optimizer state for {name}, which this run does not train")
        # moments stored in a smaller dtype come back in the parameter's (step counts stay as they are)
        dtype = params[name].dtype if field != "step" and tensor.is_floating_point() else tensor.dtype
        per_param.setdefault(index[name], {})[field] = tensor.to(params[name].device, dtype)
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    return state
