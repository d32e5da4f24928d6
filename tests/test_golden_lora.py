"""LoRA variants against md2-tiny-lora (both layouts), moonlet's own adapters, hosted ids and errors."""

from __future__ import annotations

import io
import json

import pytest
import torch
from conftest import GOLDEN_LORA, GOLDEN_MODEL
from safetensors.torch import load_file, save_file

import moonlet
from moonlet.cli import main as cli_main
from moonlet.train.lora import add_lora, lora_state, merge_lora
from moonlet.variants import VariantError

EXPECTED = json.loads((GOLDEN_LORA / "cases" / "expected.json").read_text())
ADAPTER = GOLDEN_LORA / "adapter.safetensors"
GREEDY = EXPECTED["sampling"]
CASES = EXPECTED["cases"]


@pytest.fixture(scope="module", params=["layout_b", "layout_a"])
def lora_model(request):
    path = GOLDEN_MODEL if request.param == "layout_b" else request.getfixturevalue("layout_a_dir")
    return moonlet.load(path, device="cpu", dtype="float32", variants={"tiny": ADAPTER})


def outputs(model, image, variant: str | None) -> dict:
    extra = {"variant": variant} if variant else {}
    located = {"max_objects": EXPECTED["max_objects"], **extra}
    return {
        "caption_normal": model.caption(image, "normal", settings={**GREEDY, **extra})["caption"],
        "query": model.query(image, EXPECTED["question"], settings={**GREEDY, **extra})["answer"],
        "detect": model.detect(image, EXPECTED["detect_object"], settings=located)["objects"],
        "point": model.point(image, EXPECTED["point_object"], settings=located)["points"],
    }


def assert_same(got: dict, want: dict) -> None:
    assert got["caption_normal"] == want["caption_normal"]
    assert got["query"] == want["query"]
    for key in ("detect", "point"):
        assert len(got[key]) == len(want[key])
        for g, w in zip(got[key], want[key]):
            assert g == pytest.approx(w, abs=1e-4)


@pytest.mark.parametrize("case", CASES, ids=[c["image"] for c in CASES])
@pytest.mark.parametrize("which", ["variant", "base"])
def test_with_and_without_the_adapter(lora_model, case, which):
    image = GOLDEN_LORA / "cases" / case["image"]
    assert_same(outputs(lora_model, image, "tiny" if which == "variant" else None), case[which])


def test_from_a_pt_file_and_a_directory(tmp_path):
    official = load_file(str(ADAPTER))
    torch.save(official, tmp_path / "final.pt")
    model = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32", variants=tmp_path)  # registered by stem
    assert model.variants.names == ["final"]
    case = CASES[0]
    assert_same(outputs(model, GOLDEN_LORA / "cases" / case["image"], "final"), case["variant"])
    model.variants.register("named", tmp_path / "final.pt")
    assert (
        model.query(
            GOLDEN_LORA / "cases" / case["image"], EXPECTED["question"], settings={**GREEDY, "variant": "named"}
        )["answer"]
        == case["variant"]["query"]
    )


def test_unknown_variant_is_an_error_in_every_skill(lora_model):
    image = GOLDEN_LORA / "cases" / CASES[0]["image"]
    bad = {"variant": "no-such-variant"}
    calls = [
        lambda: lora_model.caption(image, settings=bad),
        lambda: lora_model.query(image, "Hi?", settings=bad),
        lambda: lora_model.query(None, "Hi?", settings=bad),
        lambda: lora_model.detect(image, "face", settings=bad),
        lambda: lora_model.point(image, "eye", settings=bad),
        lambda: lora_model.detect_gaze(image, eye=(0.5, 0.5), settings=bad),
        lambda: lora_model.encode_image(image, settings=bad),
        lambda: lora_model.batch_query([(image, "Hi?")], settings=bad),
    ]
    for call in calls:
        with pytest.raises(VariantError, match="unknown variant 'no-such-variant'.*registered: tiny"):
            call()
    with pytest.raises(VariantError, match="non-empty string"):
        lora_model.query(image, "Hi?", settings={"variant": 3})


def test_malformed_adapters_are_errors(tmp_path):
    good = load_file(str(ADAPTER))
    cases = {
        "stray.safetensors": ({**good, "vision.blocks.0.w": torch.zeros(2)}, "not a LoRA weight"),
        "half.safetensors": (
            {k: v for k, v in good.items() if not k.endswith("h.0.mlp.fc1.parametrizations.weight.0.B")},
            "has only its A matrix",
        ),
        "shape.safetensors": ({**good, next(iter(good)): torch.zeros(4, 7)}, "do not fit"),
    }
    for name, (tensors, message) in cases.items():
        save_file(tensors, str(tmp_path / name))
        with pytest.raises(VariantError, match=message):
            moonlet.load(GOLDEN_MODEL, device="cpu", variants={"x": tmp_path / name})
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(VariantError, match="not a readable PyTorch"):
        moonlet.load(GOLDEN_MODEL, device="cpu", variants={"x": tmp_path / "junk.pt"})


def test_prefix_cache_keys_on_the_variant(lora_model):
    image = GOLDEN_LORA / "cases" / CASES[0]["image"]
    base = lora_model.encode_image(image)
    tuned = lora_model.encode_image(image, settings={"variant": "tiny"})
    assert base is not tuned and base.variant is None and tuned.variant == "tiny"
    assert not torch.equal(base.cache.keys, tuned.cache.keys)
    assert lora_model.encode_image(image, settings={"variant": "tiny"}) is tuned
    with pytest.raises(Exception, match="encoded with variant None"):
        lora_model.query(base, "Hi?", settings={"variant": "tiny"})


def moonlet_adapter(path, seed: int):
    """md2-tiny with a random rank-2 LoRA of moonlet's own format, saved to ``path`` (scale 2);
    returns the adapted model and the adapter's tensors."""
    trained = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32")
    torch.manual_seed(seed)
    add_lora(trained.model, rank=2, alpha=4.0)
    with torch.no_grad():
        for name, param in trained.model.named_parameters():
            if name.endswith("lora_b"):
                param.normal_(0, 0.05)
    state = {k: v.contiguous() for k, v in lora_state(trained.model).items()}
    save_file(state, str(path), metadata={"lora_scale": "2.0"})
    return trained, state


def test_moonlet_trained_adapter_equals_its_merged_weights(tmp_path):
    """moonlet's own LoRA format (``moonlet train --mode lora``) on the fly = the adapter merged into the weights."""
    trained, state = moonlet_adapter(tmp_path / "mine.safetensors", seed=0)
    merge_lora(trained.model)
    adapted = moonlet.load(
        GOLDEN_MODEL, device="cpu", dtype="float32", variants={"mine": tmp_path / "mine.safetensors"}
    )
    image = GOLDEN_LORA / "cases" / CASES[0]["image"]
    prompt = adapted.prompts().query(EXPECTED["question"])
    merged_logits = trained.first_token_logits(image, prompt)
    assert (adapted.first_token_logits(image, prompt, settings={"variant": "mine"}) - merged_logits).abs().max() < 1e-3
    assert (adapted.first_token_logits(image, prompt) - merged_logits).abs().max() > 1e-3  # the adapter matters
    assert_same(outputs(adapted, image, "mine"), outputs(trained, image, None))
    save_file(state, str(tmp_path / "bare.safetensors"))  # no scale anywhere: refused, not guessed
    with pytest.raises(VariantError, match="lora_scale"):
        adapted.variants.register("bare", tmp_path / "bare.safetensors")


def test_hosted_variant_needs_network_permission_then_comes_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("MOONDREAM_ENDPOINT", "http://variants.invalid")
    monkeypatch.setenv("MOONDREAM_API_KEY", "key-123")
    image = GOLDEN_LORA / "cases" / CASES[0]["image"]
    offline = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32")
    with pytest.raises(VariantError, match="allow_network"):
        offline.query(image, "Hi?", settings={"variant": "abc123"})
    buffer = io.BytesIO()
    torch.save(load_file(str(ADAPTER)), buffer)
    seen = []

    def fake_urlopen(request, timeout):  # the network is never used in tests
        seen.append((request.full_url, request.get_header("X-moondream-auth")))
        return io.BytesIO(buffer.getvalue())

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    online = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32", allow_network=True)
    answer = online.query(image, EXPECTED["question"], settings={**GREEDY, "variant": "abc123"})["answer"]
    assert answer == CASES[0]["variant"]["query"]
    assert seen == [("http://variants.invalid/v1/variants/abc123/download", "key-123")]
    cached = tmp_path / "hub" / "md_variants" / "abc123"
    assert (cached / "final.pt").is_file() and (cached / "final.safetensors").is_file()
    again = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32")  # offline: the converted copy is used
    assert again.query(image, EXPECTED["question"], settings={**GREEDY, "variant": "abc123"})["answer"] == answer


def test_cli_variant_convert(tmp_path, capsys):
    torch.save(load_file(str(ADAPTER)), tmp_path / "final.pt")
    assert cli_main(["variant", "convert", str(tmp_path / "final.pt"), str(tmp_path / "out.safetensors")]) == 0
    assert load_file(str(tmp_path / "out.safetensors")).keys() == load_file(str(ADAPTER)).keys()
    assert cli_main(["variant", "convert", str(tmp_path / "missing.pt"), str(tmp_path / "x.safetensors")]) == 2
    assert "variant file not found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def two_variants(tmp_path_factory):
    """md2-tiny with the official adapter ("tiny", rank 4) and a moonlet-format one ("mine", rank 2)."""
    folder = tmp_path_factory.mktemp("variants")
    moonlet_adapter(folder / "mine.safetensors", seed=1)
    variants = {"tiny": ADAPTER, "mine": folder / "mine.safetensors"}
    return moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32", variants=variants)


def test_rows_of_mixed_variants_decode_together_as_each_alone(two_variants):
    """One batch, rows with the official variant, moonlet's own, and none: each row's tokens and
    first-token logits equal that request run on its own (the prefix cache keyed per variant)."""
    model = two_variants
    prompts = model.prompts()
    images = [GOLDEN_LORA / "cases" / case["image"] for case in CASES]
    plan = [("tiny", images[0]), (None, images[0]), ("mine", images[-1]), ("tiny", images[-1]), (None, images[-1])]
    sampling = model.sampling(GREEDY)

    def request(variant, image):
        settings = {"variant": variant} if variant else None
        adapter = model.variants.adapter(settings)
        prefix = model.encode_image(image, settings)
        assert prefix.variant == variant  # never a prefix encoded under another variant
        return model.text_request(prefix, prompts.query(EXPECTED["question"]), sampling, adapter=adapter)

    together = model.engine.generate([request(v, i) for v, i in plan])
    alone = [model.engine.generate([request(v, i)])[0] for v, i in plan]
    assert together == alone
    assert len({tuple(t) for t in together}) > 2  # the variants really differ
    _, _, mixed_logits = model.engine.start([request(v, i) for v, i in plan])
    for row, (variant, image) in enumerate(plan):
        _, _, own = model.engine.start([request(variant, image)])
        assert (mixed_logits[row] - own[0]).abs().max() < 1e-4
    mixed_reasons = [step.finish_reasons for step in model.engine.generate_stream([request(v, i) for v, i in plan])]
    assert sum(reason is not None for reasons in mixed_reasons for reason in reasons) == len(plan)
