"""Our vision tower and text decoder against transformers' SigLIP and Phi, on small random configs.

Weights go through our own conversion (``moonlet.checkpoints.convert_hf``), configs through
``moonlet.checkpoints.config_json``. The negative controls at the end check that the comparisons
are sensitive to the things they are meant to pin down (rotary pairing, patch flattening order,
q/k/v order).
"""

from __future__ import annotations

import pytest
import torch
import transformers

from moonlet.checkpoints.config_json import text_config_from_phi, vision_config_from_siglip  # noqa: E402
from moonlet.checkpoints.convert_hf import phi_to_moonlet, siglip_to_moonlet  # noqa: E402
from moonlet.generation.kv_cache import KVCache  # noqa: E402
from moonlet.modeling import rotary  # noqa: E402
from moonlet.modeling import text as text_module  # noqa: E402
from moonlet.modeling.text import TextDecoder, attention_mask  # noqa: E402
from moonlet.modeling.vision import VisionEncoder  # noqa: E402

TOL = 1e-4


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial random weights everywhere, LayerNorms included (weight ≈ 1 ± 0.2, bias ± 0.2)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if "norm" in name:
                param.copy_(1 + 0.2 * noise if name.endswith("weight") else 0.2 * noise)
            elif param.dim() >= 2 and "position_embedding" not in name and "embed_tokens" not in name:
                fan_in = param[0].numel()
                param.copy_(noise / fan_in**0.5)
            else:  # biases and embeddings
                param.copy_(0.5 * noise)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


# --- vision -------------------------------------------------------------------------------


def _siglip_pair(hidden_act: str, eps: float, image_size: int = 56, layers: int = 2, seed: int = 0):
    hf_config = transformers.SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=14,
        hidden_act=hidden_act,
        layer_norm_eps=eps,
        vision_use_head=False,
        attn_implementation="eager",
    )
    hf = transformers.SiglipVisionModel(hf_config).eval()
    _randomize(hf, seed)
    config = vision_config_from_siglip(hf_config, crop_scheme="single", proj_out_dim=16, proj_inner_dim=16)
    ours = VisionEncoder(config).eval()
    missing, unexpected = ours.load_state_dict(siglip_to_moonlet(hf.state_dict(), config), strict=False)
    assert not unexpected
    assert missing and all(key.startswith("proj_mlp.") for key in missing), missing
    return hf, ours


@pytest.mark.parametrize(
    "hidden_act, eps, gelu, image_size",
    [
        ("gelu_pytorch_tanh", 1e-5, "tanh", 56),  # 2025 profile settings
        ("gelu", 1e-6, "exact", 84),  # 2024-03 profile settings (exact GELU, timm eps)
    ],
)
def test_vision_matches_siglip(hidden_act, eps, gelu, image_size):
    hf, ours = _siglip_pair(hidden_act, eps, image_size)
    assert ours.config.gelu == gelu and ours.config.layer_norm_eps == eps
    pixels = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        expected = hf(pixel_values=pixels).last_hidden_state
        actual = ours(pixels)
    assert expected.abs().max() > 0.5  # the outputs are not degenerate
    assert _max_diff(actual, expected) < TOL


def test_siglip_head_is_dropped_and_prefix_applied():
    hf_config = transformers.SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=28, patch_size=14
    )
    state = transformers.SiglipVisionModel(hf_config).state_dict()
    config = vision_config_from_siglip(hf_config)
    converted = siglip_to_moonlet(state, config, prefix="vision.")
    assert all(key.startswith("vision.") for key in converted)
    assert not any(".head." in key for key in converted)
    assert converted["vision.pos_emb"].shape == (1, 4, 32)
    assert converted["vision.patch_emb.weight"].shape == (32, 3 * 14 * 14)
    # transformers 4.x names the same tensors with a "vision_model." prefix
    # (and a full SiglipModel adds text_model.* keys, which are ignored)
    legacy_state = {"vision_model." + k: v for k, v in state.items()}
    legacy_state["text_model.final_layer_norm.weight"] = torch.ones(32)
    legacy = siglip_to_moonlet(legacy_state, config)
    assert legacy.keys() == {k.removeprefix("vision.") for k in converted}


# --- text ---------------------------------------------------------------------------------


def _phi_pair(n_heads: int, n_kv_heads: int, dim: int = 128, layers: int = 2, theta: float = 10000.0, seed: int = 0):
    hf_config = transformers.PhiConfig(
        vocab_size=300,
        hidden_size=dim,
        intermediate_size=2 * dim,
        num_hidden_layers=layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        partial_rotary_factor=0.5,
        rope_theta=theta,
        max_position_embeddings=256,
        hidden_act="gelu_new",
        layer_norm_eps=1e-5,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    hf = transformers.PhiForCausalLM(hf_config).eval()
    _randomize(hf, seed)
    config = text_config_from_phi(hf_config)
    config.validate()
    ours = TextDecoder(config).eval()
    ours.load_state_dict(phi_to_moonlet(hf.state_dict(), config), strict=True)
    return hf, ours


TEXT_CASES = {
    "mha_head32": dict(n_heads=4, n_kv_heads=4),
    "mha_head64": dict(n_heads=2, n_kv_heads=2, theta=500.0),
    "gqa": dict(n_heads=4, n_kv_heads=2),
}


def _ids(batch: int = 2, length: int = 24) -> torch.Tensor:
    return torch.randint(0, 300, (batch, length), generator=torch.Generator().manual_seed(2))


def _full_logits(dec: TextDecoder, ids: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(ids.shape[1]).expand(ids.shape[0], -1)
    mask = attention_mask(positions, positions[0], 0)
    return dec.logits(dec(dec.embed(ids), positions, mask))


@pytest.mark.parametrize("case", TEXT_CASES)
def test_text_matches_phi(case):
    hf, ours = _phi_pair(**TEXT_CASES[case])
    assert ours.config.rotary_dim == ours.config.head_dim // 2
    ids = _ids()
    with torch.no_grad():
        expected = hf(input_ids=ids).logits
        actual = _full_logits(ours, ids)
    assert expected.std() > 0.1
    assert _max_diff(actual, expected) < TOL


@pytest.mark.parametrize("case", TEXT_CASES)
def test_text_kv_cache_decode_matches_phi(case):
    """Prefill the first tokens into a KVCache, then decode one token at a time."""
    hf, ours = _phi_pair(**TEXT_CASES[case])
    ids = _ids()
    batch, length = ids.shape
    prefill = 9
    with torch.no_grad():
        expected = hf(input_ids=ids).logits
        cache = KVCache.allocate(ours.config, slots=batch, device="cpu", dtype=torch.float32, context=32)
        positions = torch.arange(prefill).expand(batch, -1)
        mask = attention_mask(positions, torch.arange(prefill), 0)
        hidden = ours(ours.embed(ids[:, :prefill]), positions, mask, cache)
        assert _max_diff(ours.logits(hidden), expected[:, :prefill]) < TOL
        for t in range(prefill, length):
            positions = torch.full((batch, 1), t)
            mask = attention_mask(positions, torch.arange(t + 1), 0)
            hidden = ours(ours.embed(ids[:, t : t + 1]), positions, mask, cache)
            assert _max_diff(ours.logits(hidden)[:, 0], expected[:, t]) < TOL, f"decode step at position {t}"


def test_phi_conversion_rejects_mismatched_layers():
    hf, ours = _phi_pair(n_heads=4, n_kv_heads=4, layers=2)
    fewer = text_config_from_phi(hf.config, n_layers=1)
    with pytest.raises(KeyError, match="unexpected Phi keys"):
        phi_to_moonlet(hf.state_dict(), fewer)


@pytest.mark.parametrize("profile", ["2025-06-21", "2024-03-13"])
def test_config_mapping_goes_both_ways(profile):
    """Ours -> PhiConfig / SiglipVisionConfig arguments -> ours gives the same fields back."""
    from moonlet.checkpoints.config_json import SIGLIP_VISION_FIELDS, phi_kwargs, siglip_kwargs
    from moonlet.profiles import PROFILES

    text, vision = PROFILES[profile].text, PROFILES[profile].vision
    phi = transformers.PhiConfig(**phi_kwargs(text))
    assert text_config_from_phi(phi, prefix_bidirectional=text.prefix_bidirectional) == text
    back = vision_config_from_siglip(transformers.SiglipVisionConfig(**siglip_kwargs(vision)))
    for name in [ours for _, ours in SIGLIP_VISION_FIELDS] + ["gelu"]:
        assert getattr(back, name) == getattr(vision, name), name


# --- negative controls: the comparisons above can fail ------------------------------------


def _interleaved_rotary(x, cos, sin):
    """Wrong pairing (2j, 2j+1) instead of (j, j + r/2)."""
    half = cos.shape[-1]
    rot = x[..., : 2 * half]
    x1, x2 = rot[..., 0::2], rot[..., 1::2]
    cos, sin = cos[:, None], sin[:, None]
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    return torch.cat((rotated, x[..., 2 * half :]), dim=-1)


def test_wrong_rotary_pairing_is_detected(monkeypatch):
    hf, ours = _phi_pair(n_heads=4, n_kv_heads=4)
    ids = _ids()
    with torch.no_grad():
        expected = hf(input_ids=ids).logits
        assert _max_diff(_full_logits(ours, ids), expected) < TOL
        monkeypatch.setattr(text_module, "apply_rotary", _interleaved_rotary)
        assert _max_diff(_full_logits(ours, ids), expected) > 100 * TOL
        # a rotary table built for the wrong dim count is caught too
        monkeypatch.setattr(text_module, "apply_rotary", rotary.apply_rotary)
        cos, sin = rotary.rotary_tables(ours.config.head_dim, ours.config.max_context, ours.config.rope_theta)
        ours.rope_cos, ours.rope_sin = cos[:, : ours.config.rotary_dim // 2], sin[:, : ours.config.rotary_dim // 2]
        assert _max_diff(_full_logits(ours, ids), expected) > 100 * TOL


def test_wrong_qkv_order_is_detected():
    hf, ours = _phi_pair(n_heads=4, n_kv_heads=2)
    ids = _ids()
    state = phi_to_moonlet(hf.state_dict(), ours.config)
    q_rows = ours.config.dim
    for name in [k for k in state if k.endswith("attn.qkv.weight") or k.endswith("attn.qkv.bias")]:
        q, k, v = state[name].split((q_rows, (len(state[name]) - q_rows) // 2, (len(state[name]) - q_rows) // 2))
        state[name] = torch.cat((q, v, k))
    ours.load_state_dict(state)
    with torch.no_grad():
        assert _max_diff(_full_logits(ours, ids), hf(input_ids=ids).logits) > 100 * TOL


def test_wrong_patch_flattening_is_detected():
    hf, ours = _siglip_pair("gelu_pytorch_tanh", 1e-5)
    pixels = torch.rand(1, 3, 56, 56, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        expected = hf(pixel_values=pixels).last_hidden_state
        # channel-last flattening (py, px, c) of the same conv weight
        conv = hf.state_dict()[_siglip_key(hf, "embeddings.patch_embedding.weight")]
        ours.patch_emb.weight.copy_(conv.permute(0, 2, 3, 1).reshape(conv.shape[0], -1))
        assert _max_diff(ours(pixels), expected) > 100 * TOL


def _siglip_key(model, name: str) -> str:
    keys = model.state_dict().keys()
    return name if name in keys else "vision_model." + name
