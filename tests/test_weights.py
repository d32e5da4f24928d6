"""Checkpoint loading: layouts, strictness and clear errors."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from conftest import GOLDEN
from safetensors import safe_open
from safetensors.torch import save_file

import moonlet
from moonlet.checkpoints.loading import ModelNotFoundError
from moonlet.checkpoints.weights import WeightsError, target_name
from moonlet.config import ConfigError


def test_layout_a_rules_match_the_reference_loader(golden_dir):
    names = json.loads((GOLDEN / "layout_a" / "layout_a_names.json").read_text())
    for name_a, (name_b, transposed) in names.items():
        assert target_name(name_a) == (name_b.removeprefix("model."), transposed), name_a
    assert target_name("model.text._orig_mod.wte") == ("text.wte", False)
    assert target_name("something.else") is None


def _copy_checkpoint(tmp_path, edit):
    """Copy the golden checkpoint to tmp_path after edit(tensors) changed its tensors."""
    with safe_open(str(GOLDEN / "model" / "model.safetensors"), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    edit(tensors)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(GOLDEN / "model" / name, tmp_path / name)
    return tmp_path


def test_missing_tensor_is_named(tmp_path, golden_dir):
    path = _copy_checkpoint(tmp_path, lambda t: t.pop("model.text.blocks.1.mlp.fc2.bias"))
    with pytest.raises(WeightsError, match=r"missing tensors \(1\): text.blocks.1.mlp.fc2.bias"):
        moonlet.load(path, device="cpu")


def test_unexpected_tensor_is_named(tmp_path, golden_dir):
    path = _copy_checkpoint(tmp_path, lambda t: t.update({"model.text.extra": torch.zeros(3)}))
    with pytest.raises(WeightsError, match=r"unexpected tensors \(1\): model.text.extra"):
        moonlet.load(path, device="cpu")


def test_wrong_shape_is_named(tmp_path, golden_dir):
    def edit(t):
        t["model.vision.pos_emb"] = torch.zeros(1, 700, 32)

    path = _copy_checkpoint(tmp_path, edit)
    with pytest.raises(
        WeightsError, match=r"(?s)wrong shapes.*model.vision.pos_emb: file \(1, 700, 32\) vs model \(1, 729, 32\)"
    ):
        moonlet.load(path, device="cpu")


def test_non_float_tensors_are_refused(tmp_path, golden_dir):
    def edit(t):
        t["model.vision.pos_emb"] = torch.zeros(t["model.vision.pos_emb"].shape, dtype=torch.int8)

    path = _copy_checkpoint(tmp_path, edit)
    with pytest.raises(WeightsError, match=r"(?s)non-float tensors.*model.vision.pos_emb \(torch.int8\)"):
        moonlet.load(path, device="cpu")


def test_code_shipped_with_a_checkpoint_is_never_run(tmp_path, golden_dir):
    """A checkpoint may carry remote-code files and an ``auto_map`` (the hub's moondream2 does):
    loading reads config.json and safetensors only."""
    path = _copy_checkpoint(tmp_path, lambda t: None)
    marker = tmp_path / "executed"
    payload = f"open({str(marker)!r}, 'w').write('ran')\n"
    for name in (
        "hf_moondream.py",
        "moondream.py",
        "modeling_moondream.py",
        "configuration_moondream.py",
        "__init__.py",
    ):
        (path / name).write_text(payload)
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "hf_moondream.HFMoondreamConfig",
        "AutoModelForCausalLM": "hf_moondream.HFMoondream",
    }
    (path / "config.json").write_text(json.dumps(config))
    model = moonlet.load(path, device="cpu")
    assert model.model is not None and not marker.exists()


def test_config_that_does_not_match_weights_names_both(tmp_path, golden_dir):
    path = _copy_checkpoint(tmp_path, lambda t: None)
    config = json.loads((path / "config.json").read_text())
    config["config"]["text"]["n_layers"] = 3
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"(?s)missing tensors.*text.blocks.2.*config\.json"):
        moonlet.load(path, device="cpu")


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".ckpt"])
def test_pickle_files_are_refused(tmp_path, suffix):
    path = tmp_path / f"pytorch_model{suffix}"
    path.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(WeightsError, match="pickle.*arbitrary code"):
        moonlet.load(path, device="cpu")
    shutil.copy(GOLDEN / "model" / "config.json", tmp_path / "config.json")
    with pytest.raises(WeightsError, match="pickle"):
        moonlet.load(tmp_path, device="cpu")  # a directory holding only a pickle checkpoint


def test_corrupt_file(tmp_path, golden_dir):
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    shutil.copy(GOLDEN / "model" / "config.json", tmp_path / "config.json")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        moonlet.load(tmp_path, device="cpu")


def test_truncated_file(tmp_path, golden_dir):
    data = (GOLDEN / "model" / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    shutil.copy(GOLDEN / "model" / "config.json", tmp_path / "config.json")
    with pytest.raises(WeightsError):
        moonlet.load(tmp_path, device="cpu")


def test_missing_config(tmp_path, golden_dir):
    shutil.copy(GOLDEN / "model" / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(ConfigError, match="no config.json"):
        moonlet.load(tmp_path / "model.safetensors", device="cpu")


def test_unknown_path():
    with pytest.raises(ModelNotFoundError, match="no such file"):
        moonlet.load("/nonexistent/dir/x", device="cpu")


def test_offline_hub_id_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
        moonlet.load("vikhyatk/moondream2", device="cpu")


def test_loads_a_single_safetensors_file_with_config_beside(golden_dir):
    model = moonlet.load(golden_dir / "model.safetensors", device="cpu")
    with safe_open(str(golden_dir / "model.safetensors"), framework="pt") as source:
        in_file = sum(math.prod(source.get_slice(name).get_shape()) for name in source.keys())
    assert in_file == 9_578_144  # the golden checkpoint's 372 tensors
    assert model.model.num_parameters() == in_file  # quantised layers (fp16 by the CPU plan) counted too


def test_loads_in_checkpoint_dtype_when_asked(golden_dir):
    model = moonlet.load(golden_dir, device="cpu", dtype="bfloat16")
    assert model.model.text.wte.dtype == torch.bfloat16
    assert model.model.text.rope_cos.dtype == torch.float32  # rotary tables stay float32


def test_save_and_reload_roundtrip(tmp_path, golden_dir):
    from moonlet.checkpoints.save import save_pretrained

    model = moonlet.load(golden_dir, device="cpu", dtype="float32")
    save_pretrained(model, tmp_path / "saved")
    again = moonlet.load(tmp_path / "saved", device="cpu", dtype="float32")
    assert again.config == model.config
    for (name, a), (_, b) in zip(model.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("revision", ["../../etc", "main/../x", "a b"])
def test_revisions_that_could_escape_the_cache_are_refused(revision):
    with pytest.raises(ValueError, match="invalid revision"):
        moonlet.load("vikhyatk/moondream2", revision=revision, device="cpu")


def test_names_that_are_neither_paths_nor_hub_ids_are_refused():
    with pytest.raises(ModelNotFoundError, match="not a hub id"):
        moonlet.load("../../../no/such/thing", device="cpu")


def test_tensors_are_read_largest_first(tmp_path):
    """The big tensors are converted while little else is built (the load's peak), and every
    window of the file is mapped afresh."""
    from safetensors.torch import save_file

    from moonlet.checkpoints import weights

    tensors = {f"t{i}": torch.zeros(n) for i, n in enumerate([5, 300, 20, 4000, 1])}
    save_file(tensors, str(tmp_path / "x.safetensors"))
    order = [name for name, _ in weights._windowed(tmp_path / "x.safetensors")]
    assert order == ["t3", "t1", "t2", "t0", "t4"]
