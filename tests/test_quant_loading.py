"""Loading picks dtype and weight formats from the CPU's plan, and quantises while reading."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import GOLDEN_MODEL
from torch import nn

import moonlet
from moonlet.checkpoints import loading
from moonlet.cli import main
from moonlet.quant import CpuKind, dispatch, formats, plan_for, quantize_
from moonlet.quant.formats import load_formats, weight_formats
from moonlet.quant.kernels import Int8Linear

IMAGE = GOLDEN_MODEL.parents[1] / "md2-tiny-grounded" / "cases" / "astronaut.png"
AVX2 = CpuKind("x86_64", "AVX2")
BF16 = CpuKind("x86_64", "AVX512", bf16=True, vnni=True)


def first_logits(model) -> torch.Tensor:
    return model.first_token_logits(IMAGE, model.prompts().query("What is this?"))


@pytest.mark.parametrize(("quant", "parts"), [("int8", ("text",)), ("int4", ("text", "vision"))])
def test_quantised_while_reading_equals_quantised_after_loading(quant, parts):
    direct = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32", quant=quant, quant_parts=parts)
    after = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32")
    quantize_(after, quant, include=parts)
    assert weight_formats(direct.model) == weight_formats(after.model)
    assert not any(type(m) is nn.Linear for m in direct.model.text.modules())
    # int8, and int4 too, give the output head int8 weights
    assert type(direct.model.text.lm_head) is Int8Linear and type(after.model.text.lm_head) is Int8Linear
    assert torch.equal(first_logits(direct), first_logits(after))
    assert direct.model.num_parameters() == after.model.num_parameters()


def test_targeted_float_weights_never_reach_the_state(monkeypatch):
    """Each quantised layer's float weight is consumed as it is read; the state dict never holds it."""
    seen = {}
    read = loading.read_checkpoint

    def spy(*args, **kwargs):
        state = read(*args, **kwargs)
        seen["state"], seen["targets"] = set(state), set(kwargs["consume"].targets)
        return state

    monkeypatch.setattr(loading, "read_checkpoint", spy)
    moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32", quant="int8")
    assert seen["targets"] and not {f"{t}.weight" for t in seen["targets"]} & seen["state"]


def test_the_default_follows_the_plan(monkeypatch):
    native_bf16 = dispatch.detect_cpu().bf16  # this CPU's, before the plan is forced
    monkeypatch.setattr(formats, "PACKED_MIN_WEIGHTS", 1)  # the golden model's layers are small
    monkeypatch.setattr(dispatch, "detect_cpu", lambda: AVX2)
    fast = moonlet.load(GOLDEN_MODEL, device="cpu")  # a bfloat16 checkpoint: float16 holds its values
    reference = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32")  # an explicit dtype wins
    assert set(weight_formats(fast.model)) >= {"fp16/fbgemm"} and "fp16/fbgemm" not in weight_formats(reference.model)
    assert fast.model.dtype == torch.float32
    difference = (first_logits(fast) - first_logits(reference)).abs().max() / first_logits(reference).abs().max()
    assert difference < 1e-3
    monkeypatch.setattr(dispatch, "detect_cpu", lambda: BF16)
    fast = moonlet.load(GOLDEN_MODEL, device="cpu")
    reference = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="bfloat16")  # plain bf16 layers
    assert fast.model.dtype == reference.model.dtype == torch.bfloat16
    # packed bf16 weights (oneDNN); where this CPU has no native bf16, oneDNN may refuse them (its
    # check fails: the plain fallback)
    kernels = {"onednn"} if native_bf16 else {"onednn", "dequant"}
    assert {f"bf16/{k}" for k in kernels} & set(weight_formats(fast.model))
    assert set(weight_formats(reference.model)) == {"bfloat16"}
    difference = (first_logits(fast) - first_logits(reference)).abs().max() / first_logits(reference).abs().max()
    assert difference < 2e-2
    assert moonlet.load(device="cpu").model.dtype == torch.float32  # moonlet-nano stores float16: not narrowed


def test_the_embedding_table_keeps_its_stored_dtype(monkeypatch):
    """A bfloat16 checkpoint loaded for float32 compute keeps its lookup table in bfloat16 (exact),
    unless a dtype is asked for; the answers are those of the all-float32 model."""
    monkeypatch.setattr(dispatch, "detect_cpu", lambda: AVX2)
    monkeypatch.setattr(formats, "DENSE_PARTS", ())  # the table alone differs
    default = moonlet.load(GOLDEN_MODEL, device="cpu")
    explicit = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32")
    assert default.model.dtype == explicit.model.dtype == torch.float32
    assert default.model.text.wte.dtype == torch.bfloat16 and explicit.model.text.wte.dtype == torch.float32
    assert torch.equal(first_logits(default), first_logits(explicit))


def test_formats_applied_to_a_built_model_equal_a_load_with_them(monkeypatch):
    """``apply_formats`` (the bench's random models) builds the layers a load with the formats builds."""
    monkeypatch.setattr(formats, "PACKED_MIN_WEIGHTS", 1)
    monkeypatch.setattr(dispatch, "detect_cpu", lambda: AVX2)
    loaded = moonlet.load(GOLDEN_MODEL, device="cpu", quant="int8")  # int8 text, fp16 vision and region
    built = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32")
    chosen = load_formats(plan_for(AVX2), "bfloat16", False, "int8")
    assert formats.apply_formats(built.model, chosen) == weight_formats(loaded.model)
    assert {"int8/fbgemm", "fp16/fbgemm"} <= set(weight_formats(loaded.model))
    assert torch.equal(first_logits(built), first_logits(loaded))


def test_load_formats():
    avx2, bf16 = plan_for(AVX2), plan_for(BF16)
    assert load_formats(avx2, "bfloat16", dtype_given=False) == {"text": "fp16", "vision": "fp16", "region": "fp16"}
    assert load_formats(avx2, "float32", dtype_given=False) == {}  # float16 would round float32 weights
    assert load_formats(avx2, "bfloat16", dtype_given=True) == {}
    assert load_formats(bf16, "bfloat16", dtype_given=False) == {"text": "bf16", "vision": "bf16", "region": "bf16"}
    assert (
        load_formats(bf16, "float32", dtype_given=False) == load_formats(bf16, "float16", False) == {}
    )  # float32 model
    assert load_formats(bf16, "bfloat16", dtype_given=True) == {}
    # the quantised parts take the quant; the others keep the plan's float16 weights
    assert load_formats(avx2, "bfloat16", False, "int4", ("text", "region")) == {
        "text": "int4",
        "vision": "fp16",
        "region": "int4",
    }
    assert load_formats(avx2, "float32", False, "int8") == {"text": "int8"}
    assert load_formats(bf16, "bfloat16", False, "int8") == {"text": "int8", "vision": "bf16", "region": "bf16"}
    with pytest.raises(ValueError, match="unknown quant 'int3'"):
        load_formats(avx2, "bfloat16", False, "int3")
    with pytest.raises(ValueError, match="unknown parts"):
        load_formats(avx2, "bfloat16", False, "int8", ("txt",))


def test_info_reports_the_plan_and_formats(capsys):
    assert main(["info", "--model", str(GOLDEN_MODEL), "--quant", "int8", "--device", "cpu"]) == 0
    info = json.loads(capsys.readouterr().out)
    plan = plan_for()
    assert info["kernel_plan"]["cpu"] == plan.cpu and info["kernel_plan"]["int8"]["choice"] == plan.int8.value
    assert any(key.startswith("int8/") for key in info["weight_formats"])
    with pytest.raises(SystemExit):
        main(["info", "--model", str(GOLDEN_MODEL), "--quant-parts", "txt"])
    assert "parts are text, vision and region" in capsys.readouterr().err


def test_fbgemm_layers_compile_in_one_graph(monkeypatch):
    """fbgemm's packed weights are called through a custom op: the decode step still compiles whole."""
    if not dispatch.detect_cpu().x86:
        pytest.skip("fbgemm is PyTorch's x86 engine")
    monkeypatch.setattr(dispatch, "detect_cpu", lambda: AVX2)
    settings = {"temperature": 0, "max_tokens": 4}
    eager = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32", quant="int8")
    compiled = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32", quant="int8", compile=True)
    assert "int8/fbgemm" in weight_formats(compiled.model)
    assert compiled.query(IMAGE, "Hi?", settings=settings) == eager.query(IMAGE, "Hi?", settings=settings)


def test_bytes_and_parameters_count_quantised_layers():
    """Quantised layers count their weights' in × out values as parameters and their packed bytes."""
    from moonlet.quant import tensor_bytes

    plain = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32")
    for quant in ("int8", "int4"):
        quantised = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32", quant=quant)
        assert quantised.model.num_parameters() == plain.model.num_parameters()
        assert tensor_bytes(quantised.model) < tensor_bytes(plain.model)
