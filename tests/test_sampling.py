"""Next-token selection and the user settings that drive it."""

from __future__ import annotations

import math

import pytest
import torch

from moonlet.config import GenerationDefaults
from moonlet.generation.sampling import SamplingSettings, SettingsError, select_next

DEFAULTS = GenerationDefaults(max_tokens=768, temperature=0.5, top_p=0.3, max_objects=50)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def frequencies(logits_row, temperature, top_p, draws=20000, seed=0) -> torch.Tensor:
    logits = torch.tensor(logits_row, dtype=torch.float32).expand(draws, -1)
    ids = select_next(logits, temperature, top_p, gen(seed))
    assert ids.shape == (draws,)
    return torch.bincount(ids, minlength=len(logits_row)).float() / draws


# --- select_next ----------------------------------------------------------------------------


def test_greedy_is_argmax():
    logits = torch.randn(16, 50, generator=gen(0))
    ids = select_next(logits, 0.0, 0.3)
    assert ids.shape == (16,)
    assert torch.equal(ids, logits.argmax(-1))
    assert len(set(ids.tolist())) > 1  # rows differ: the argmax is taken per row


def test_greedy_ignores_top_p_and_generator():
    logits = torch.randn(8, 30, generator=gen(1))
    assert torch.equal(select_next(logits, 0, 1.0, gen(5)), select_next(logits, 0, 0.01, gen(6)))


def test_small_top_p_only_ever_draws_the_top_token():
    logits = torch.randn(64, 40, generator=gen(2)) * 0.5  # fairly flat: other tokens are likely
    top = logits.argmax(-1)
    for seed in range(20):
        assert torch.equal(select_next(logits, 1.0, 1e-6, gen(seed)), top)
    # the same logits with top_p = 1 do draw other tokens
    assert not torch.equal(select_next(logits, 1.0, 1.0, gen(0)), top)


def test_top_p_keeps_the_top_token_even_when_it_alone_exceeds_top_p():
    # probabilities 0.9 / 0.05 / 0.05: the top token's own mass is above top_p and it must survive
    logits = torch.log(torch.tensor([[0.05, 0.9, 0.05]])).expand(500, -1)
    assert set(select_next(logits, 1.0, 0.2, gen(0)).tolist()) == {1}


def test_top_p_cuts_the_tail_by_mass_before_each_token():
    # sorted probabilities 0.5, 0.3, 0.15, 0.05: mass before them 0, 0.5, 0.8, 0.95
    probs = [0.15, 0.5, 0.05, 0.3]
    logits = [math.log(p) for p in probs]
    freq = frequencies(logits, 1.0, 0.6)
    assert freq[0] == 0 and freq[2] == 0  # mass before 0.8 and 0.95 > 0.6
    assert freq[1] == pytest.approx(0.5 / 0.8, abs=0.02) and freq[3] == pytest.approx(0.3 / 0.8, abs=0.02)
    freq = frequencies(logits, 1.0, 0.85)  # now 0.15 (mass before 0.8) is kept, 0.05 is not
    assert freq[2] == 0 and freq[0] > 0.1
    assert (frequencies(logits, 1.0, 1.0) > 0).all()


def test_top_p_keeps_a_token_whose_mass_before_equals_top_p():
    # four equally likely tokens: mass before them is exactly 0, 0.25, 0.5, 0.75
    freq = frequencies([0.0, 0.0, 0.0, 0.0], 1.0, 0.5, draws=4000)
    assert (freq[:3] > 0.25).all() and freq[3] == 0
    freq = frequencies([0.0, 0.0], 1.0, 0.5, draws=4000)
    assert (freq > 0.4).all()


@pytest.mark.parametrize("temperature, expected", [(1.0, 0.75), (0.5, 0.9), (2.0, math.sqrt(3) / (math.sqrt(3) + 1))])
def test_temperature_scales_the_distribution(temperature, expected):
    # p = (0.75, 0.25); softmax(logits / T) gives p^(1/T) renormalised
    freq = frequencies([math.log(0.75), math.log(0.25)], temperature, 1.0)
    assert freq[0].item() == pytest.approx(expected, abs=0.015)


def test_temperature_divides_the_logits():
    logits = torch.randn(32, 20, generator=gen(3))
    for temperature in (0.3, 1.7):
        a = select_next(logits, temperature, 0.9, gen(42))
        b = select_next(logits / temperature, 1.0, 0.9, gen(42))
        assert torch.equal(a, b)
    # and it matters: a low temperature concentrates the draws on the argmax
    low = select_next(logits, 0.05, 1.0, gen(1))
    high = select_next(logits, 5.0, 1.0, gen(1))
    top = logits.argmax(-1)
    assert (low == top).sum() > (high == top).sum() + 10


def test_seeded_generator_is_reproducible():
    logits = torch.randn(50, 100, generator=gen(4))
    a = select_next(logits, 1.0, 1.0, gen(123))
    b = select_next(logits, 1.0, 1.0, gen(123))
    c = select_next(logits, 1.0, 1.0, gen(321))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_ids_are_valid_indices():
    logits = torch.randn(10, 7, generator=gen(5))
    ids = select_next(logits, 0.8, 0.5, gen(0))
    assert ids.dtype == torch.long and ids.shape == (10,)
    assert ((ids >= 0) & (ids < 7)).all()


# --- SamplingSettings.from_settings ---------------------------------------------------------


def test_defaults_without_settings():
    for empty in (None, {}):
        settings = SamplingSettings.from_settings(DEFAULTS, empty)
        assert settings == SamplingSettings(768, 0.5, 0.3, None)
    custom = GenerationDefaults(max_tokens=12, temperature=0.0, top_p=0.9)
    assert SamplingSettings.from_settings(custom, None) == SamplingSettings(12, 0.0, 0.9, None)


def test_settings_override_defaults():
    settings = SamplingSettings.from_settings(DEFAULTS, {"max_tokens": 5, "temperature": 0, "top_p": 1.0, "seed": 7})
    assert settings == SamplingSettings(5, 0, 1.0, 7)
    partial = SamplingSettings.from_settings(DEFAULTS, {"temperature": 0.9})
    assert partial == SamplingSettings(768, 0.9, 0.3, None)


def test_region_keys_are_accepted_and_not_stored():
    settings = SamplingSettings.from_settings(DEFAULTS, {"max_objects": 3, "variant": "x", "top_p": 0.5})
    assert settings == SamplingSettings(768, 0.5, 0.5, None)


def test_unknown_keys_are_rejected_by_name():
    with pytest.raises(SettingsError, match="max_new_tokens") as info:
        SamplingSettings.from_settings(DEFAULTS, {"max_new_tokens": 5, "temperature": 0.1})
    assert "temperature" not in str(info.value).split(";")[0]  # only the unknown key is reported as unknown
    with pytest.raises(SettingsError, match="topp"):
        SamplingSettings.from_settings(DEFAULTS, {"topp": 0.5})


@pytest.mark.parametrize("value", [-1, 0, -100, 2.5, True, "10"])
def test_bad_max_tokens_is_rejected(value):
    with pytest.raises(SettingsError, match="max_tokens"):
        SamplingSettings.from_settings(DEFAULTS, {"max_tokens": value})


@pytest.mark.parametrize("value", [0, 0.0, -0.1, 1.0001, 2, float("nan")])
def test_top_p_outside_zero_one_is_rejected(value):
    with pytest.raises(SettingsError, match="top_p"):
        SamplingSettings.from_settings(DEFAULTS, {"top_p": value})


@pytest.mark.parametrize("value", [1.0, 1e-6, 0.5])
def test_top_p_in_zero_one_is_accepted(value):
    assert SamplingSettings.from_settings(DEFAULTS, {"top_p": value}).top_p == value


@pytest.mark.parametrize("value", [-0.1, -1, -1e-9, float("nan")])
def test_negative_temperature_is_rejected(value):
    with pytest.raises(SettingsError, match="temperature"):
        SamplingSettings.from_settings(DEFAULTS, {"temperature": value})


@pytest.mark.parametrize("value", [0, 0.0, 1.5])
def test_non_negative_temperature_is_accepted(value):
    assert SamplingSettings.from_settings(DEFAULTS, {"temperature": value}).temperature == value


def test_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)


# Regression: validate() once checked these through float() only, so "0.5" was stored as a str
# (crashing later in select_next), "hot" raised float()'s ValueError naming no field, None raised
# TypeError, and seed was never checked.
@pytest.mark.parametrize(
    "key, value",
    [
        ("temperature", "0.5"),
        ("temperature", "hot"),
        ("temperature", None),
        ("temperature", True),
        ("top_p", "0.5"),
        ("top_p", None),
        ("max_tokens", None),
        ("seed", "x"),
        ("seed", 1.5),
    ],
)
def test_non_numeric_values_are_rejected_by_name(key, value):
    with pytest.raises(SettingsError, match=key):
        SamplingSettings.from_settings(DEFAULTS, {key: value})
