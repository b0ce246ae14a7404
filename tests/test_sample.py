"""The compiled sampling kernels (charlm.backends.cpu.sample) against the numpy reference sampler."""

from __future__ import annotations

import numpy as np
import pytest
from reference import sample as ref

from charlm.backends.cpu import sample as K
from charlm.config import ModelConfig

V = 7


def random_params(config: ModelConfig, seed=0, scale=1.0):
    r = np.random.default_rng(seed)
    G, H, n = config.gates, config.hidden, config.vocab_size
    p = {}
    if config.embed:
        p["embed.weight"] = r.standard_normal((n, config.embed))
    for k in range(config.layers):
        inp = config.input_size if k == 0 else H
        for name, shape in (("weight_ih", (G * H, inp)), ("weight_hh", (G * H, H)),
                            ("bias_ih", (G * H,)), ("bias_hh", (G * H,))):
            p[f"rnn.{name}_l{k}"] = r.uniform(-scale, scale, shape)
    p["head.weight"] = r.uniform(-2 * scale, 2 * scale, (n, H))
    p["head.bias"] = r.uniform(-1, 1, n)
    return p


def run_kernel(config, params, prime, start, length, temperature, top_k, top_p, seed, B=1, chunks=(None,),
               dtype=np.float64):
    """Generate with the kernels, in the given chunk sizes (None = everything at once)."""
    w = K.prepare(config.cell, params, config.layers, config.nonlinearity == "relu", dtype=dtype)
    L, H = config.layers, config.hidden
    h = np.zeros((L, 1, H), dtype)
    c = np.zeros((L, 1, H), dtype)
    if len(prime) > 1:
        K.consume(w, h, c, np.array(prime[:-1], np.int32))
    h, c = np.ascontiguousarray(np.repeat(h, B, 1)), np.ascontiguousarray(np.repeat(c, B, 1))
    x = np.full(B, prime[-1] if prime else start, np.int32)
    rng = np.random.default_rng(seed)
    outs, left = [], length
    for n in chunks:
        n = left if n is None else n
        out = np.zeros((B, n), np.int32)
        K.generate(w, h, c, x, out, temperature, top_k, top_p, rng)
        outs.append(out)
        left -= n
    return np.concatenate(outs, axis=1)


CONFIGS = [
    ModelConfig(vocab_size=V, cell="lstm", layers=2, hidden=5, embed=4),
    ModelConfig(vocab_size=V, cell="gru", layers=2, hidden=5, embed=4),
    ModelConfig(vocab_size=V, cell="rnn", layers=2, hidden=5, embed=0),
    ModelConfig(vocab_size=V, cell="rnn", layers=1, hidden=6, embed=3, nonlinearity="relu"),
]
IDS = ["lstm", "gru", "rnn-onehot", "rnn-relu"]


ARGMAX_CASES = list(zip(CONFIGS, [3, 6, 2, 4], [2.0, 2.0, 2.0, 1.0], strict=True))   # seeds, weight scales


@pytest.mark.parametrize("config,seed,scale", ARGMAX_CASES, ids=IDS)
def test_argmax_matches_reference(config, seed, scale):
    params = random_params(config, seed=seed, scale=scale)
    got = run_kernel(config, params, [1, 4, 2], 0, 30, 0.0, 0, 1.0, seed=0)
    want = ref.sample(config, params, [1, 4, 2], 0, 30, 0.0, 0, 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(got, want)
    assert len(set(got[0].tolist())) >= 3   # not stuck on one character


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
@pytest.mark.parametrize("top_k,top_p", [(0, 1.0), (3, 1.0), (0, 0.6), (4, 0.8)])
def test_seeded_draws_match_reference(config, top_k, top_p):
    params = random_params(config, seed=2, scale=0.5)
    got = run_kernel(config, params, [3], 0, 25, 0.9, top_k, top_p, seed=7, B=2)
    want = ref.sample(config, params, [3], 0, 25, 0.9, top_k, top_p, np.random.default_rng(7), num_samples=2)
    np.testing.assert_array_equal(got, want)


def test_top_k_one_is_argmax_and_empty_prime_uses_start():
    config = CONFIGS[0]
    params = random_params(config, seed=3)
    a = run_kernel(config, params, [], 5, 20, 1.3, 1, 1.0, seed=0)
    b = ref.sample(config, params, [], 5, 20, 0.0, 0, 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)


def test_same_seed_same_ids_and_chunks_continue():
    config = CONFIGS[1]
    params = random_params(config, seed=4, scale=0.3)
    whole = run_kernel(config, params, [2, 2], 0, 40, 1.0, 0, 1.0, seed=11, B=3)
    again = run_kernel(config, params, [2, 2], 0, 40, 1.0, 0, 1.0, seed=11, B=3)
    pieces = run_kernel(config, params, [2, 2], 0, 40, 1.0, 0, 1.0, seed=11, B=3, chunks=(7, 1, 32))
    other = run_kernel(config, params, [2, 2], 0, 40, 1.0, 0, 1.0, seed=12, B=3)
    np.testing.assert_array_equal(whole, again)
    np.testing.assert_array_equal(whole, pieces)
    assert not np.array_equal(whole, other)
    assert not np.array_equal(whole[0], whole[1])   # rows draw independently


def test_float32_kernel_close_to_float64():
    config = CONFIGS[0]
    params = random_params(config, seed=5)
    a = run_kernel(config, params, [1, 2, 3], 0, 30, 0.0, 0, 1.0, seed=0, dtype=np.float32)
    b = run_kernel(config, params, [1, 2, 3], 0, 30, 0.0, 0, 1.0, seed=0)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- filtering and picking


def kernel_filter(z, temperature, top_k, top_p):
    z = np.asarray(z, dtype=np.float64)
    p, q, heap = np.empty(z.size), np.empty(z.size), np.empty(z.size, np.int32)
    total = K.filter_probs(z, temperature, top_k, top_p, p, q, heap)
    return p, total


def kept(z, temperature=1.0, top_k=0, top_p=1.0):
    p, total = kernel_filter(z, temperature, top_k, top_p)
    rp, rtotal = ref.filter_probs(z, temperature, top_k, top_p)
    np.testing.assert_array_equal(p, rp)
    assert total == rtotal
    return set(np.flatnonzero(p).tolist())


def test_top_p_keeps_smallest_set_reaching_p():
    z = np.log([0.1, 0.5, 0.3, 0.1])
    assert kept(z, top_p=0.45) == {1}
    assert kept(z, top_p=0.75) == {1, 2}
    assert kept(z, top_p=0.85) == {1, 2, 0}           # tie 0.1/0.1: the lower index first
    assert kept(z, top_p=0.95) == {0, 1, 2, 3}
    assert kept(z, top_p=1.0) == {0, 1, 2, 3}


def test_top_k_and_both():
    z = np.log([0.05, 0.4, 0.25, 0.2, 0.1])
    assert kept(z, top_k=2) == {1, 2}
    assert kept(z, top_k=3) == {1, 2, 3}
    assert kept(z, top_k=5) == {0, 1, 2, 3, 4}
    assert kept(z, top_k=9) == {0, 1, 2, 3, 4}
    # top-p applies to the renormalized top-k: 0.4 / 0.85 = 0.47 < 0.5 <= (0.4 + 0.25) / 0.85
    assert kept(z, top_k=3, top_p=0.5) == {1, 2}
    assert kept(z, top_k=3, top_p=0.45) == {1}


def test_temperature_scales_logits():
    z = np.array([0.0, 1.0, 3.0])
    p, total = kernel_filter(z, 2.0, 0, 1.0)
    np.testing.assert_allclose(p / total, np.exp(z / 2) / np.exp(z / 2).sum(), rtol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_filter_matches_reference_on_random_logits(seed):
    r = np.random.default_rng(seed)
    for _ in range(40):
        n = int(r.integers(1, 30))
        z = np.round(r.standard_normal(n) * 2, 1)          # rounded: ties happen
        kept(z, float(r.uniform(0.3, 2)), int(r.integers(0, n + 2)), float(r.choice([1.0, r.uniform(0.05, 1)])))


def constant_model(probs, cell="lstm"):
    """A model whose next-token distribution is ``probs`` whatever the input (all weights zero)."""
    n = len(probs)
    config = ModelConfig(vocab_size=n, cell=cell, layers=1, hidden=3, embed=2)
    params = {k: np.zeros_like(v) for k, v in random_params(config).items()}
    params["head.bias"] = np.log(np.asarray(probs, dtype=np.float64))
    return config, params


def chi_square(ids, probs):
    n = ids.size
    counts = np.bincount(ids, minlength=len(probs))
    expected = n * np.asarray(probs)
    mask = expected > 0
    assert counts[~mask].sum() == 0
    return float(((counts[mask] - expected[mask]) ** 2 / expected[mask]).sum())


CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27}   # 99.9% quantiles by degrees of freedom


@pytest.mark.parametrize("temperature,top_k,top_p,want", [
    (1.0, 0, 1.0, [0.5, 0.25, 0.15, 0.1]),
    (2.0, 0, 1.0, np.sqrt([0.5, 0.25, 0.15, 0.1]) / np.sqrt([0.5, 0.25, 0.15, 0.1]).sum()),
    (1.0, 2, 1.0, [2 / 3, 1 / 3, 0, 0]),
    (1.0, 0, 0.7, [2 / 3, 1 / 3, 0, 0]),
    (1.0, 0, 0.85, [0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0]),
])
def test_sampling_frequencies(temperature, top_k, top_p, want):
    config, params = constant_model([0.5, 0.25, 0.15, 0.1])
    ids = run_kernel(config, params, [0], 0, 20000, temperature, top_k, top_p, seed=123, dtype=np.float32)[0]
    df = int(np.count_nonzero(want)) - 1
    stat = chi_square(ids, want)
    assert stat < CHI2_999[df], (stat, np.bincount(ids, minlength=4))
    # and the test can tell distributions apart: the unfiltered distribution fails when filtering applies
    if top_k or top_p < 1:
        assert np.bincount(ids, minlength=4)[3] == 0


def test_pick_is_argmax_at_temperature_zero():
    z = np.array([0.3, 2.0, -1.0, 2.0], np.float32)
    s = np.empty(4)
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    assert K.pick(z, 0.0, 0, 1.0, rng, s, s.copy(), np.empty(4, np.int32)) == 1
    assert rng.bit_generator.state == before            # no random draw spent
    assert K.pick(z, 1e-3, 0, 1.0, rng, s, s.copy(), np.empty(4, np.int32)) in (1, 3)
