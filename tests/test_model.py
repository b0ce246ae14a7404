"""CharLM end to end: parameter layout, forward against the numpy reference, every gradient
against float64 finite differences (with and without dropout), windowed state carrying,
state dicts and initialization. Tiny shapes: V=7, E=5, H=4, T=5, B=3."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_grad, rel_err
from reference import model as ref

from charlm.config import ModelConfig
from charlm.errors import CheckpointError
from charlm.model import CharLM, count_params, param_shapes

V, E, H, T, B = 7, 5, 4, 5, 3
N = T * B
CELLS = ("rnn", "lstm", "gru")
# (cell, layers, embed, nonlinearity): every cell x {1, 2} layers x {embedding, one-hot}, plus relu.
CASES = [(c, L, e, "tanh") for c in CELLS for L in (1, 2) for e in (E, 0)] + [("rnn", 2, E, "relu")]
CASE_IDS = [f"{c}-L{L}-{'emb' if e else 'onehot'}-{nl}" for c, L, e, nl in CASES]


def cfg(cell, layers=2, embed=E, nonlinearity="tanh", **kw):
    return ModelConfig(vocab_size=V, cell=cell, layers=layers, hidden=H, embed=embed,
                       nonlinearity=nonlinearity, **kw)


def batch(T=T, B=B, seed=0):
    """Input ids x and targets y, (T, B) int32; x holds every vocabulary id at least once."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, V, T * B)
    x[:V] = np.arange(V)
    rng.shuffle(x)
    y = rng.integers(0, V, (T, B))
    return x.reshape(T, B).astype(np.int32), y.astype(np.int32)


def rand_state(model, B=B, seed=1):
    """A non-zero carried state (h, c), each (L, B, H); c is non-zero even for rnn/gru (must be ignored)."""
    rng = np.random.default_rng(seed)
    shape = (model.config.layers, B, model.config.hidden)
    return tuple((0.5 * rng.standard_normal(shape)).astype(model.dtype) for _ in range(2))


def ref_params(model):
    return {k: v.astype(np.float64) for k, v in model.state_dict().items()}


def ref_forward(model, x, state, masks=None):
    h0, c0 = (np.asarray(s, np.float64) for s in state)
    return ref.forward(model.config, ref_params(model), x, h0, c0, masks)


def saved_grads(model):
    return {k: v.copy() for k, v in model.grads.items()}


def assert_grads_match_fd(model, f, grads, seed=0, tol=1e-6):
    """Every parameter tensor: analytic grads vs centered differences of f() at 6 sampled entries."""
    rng = np.random.default_rng(seed)
    for name in model.names:
        assert np.abs(grads[name]).max() > 0, f"{name}: gradient is all zeros"
        err = check_grad(f, model.params[name], grads[name], rng, k=6, eps=1e-5)
        assert err < tol, f"{name}: relative error {err:.2e}"


# ----- parameter layout ---------------------------------------------------------------------------
def test_param_shapes_use_pytorch_names():
    got = param_shapes(cfg("lstm", layers=2, embed=E))
    assert list(got.items()) == [
        ("embed.weight", (V, E)),
        ("rnn.weight_ih_l0", (4 * H, E)), ("rnn.weight_hh_l0", (4 * H, H)),
        ("rnn.bias_ih_l0", (4 * H,)), ("rnn.bias_hh_l0", (4 * H,)),
        ("rnn.weight_ih_l1", (4 * H, H)), ("rnn.weight_hh_l1", (4 * H, H)),
        ("rnn.bias_ih_l1", (4 * H,)), ("rnn.bias_hh_l1", (4 * H,)),
        ("head.weight", (V, H)), ("head.bias", (V,)),
    ]
    assert count_params(cfg("lstm", layers=2, embed=E)) == 35 + (80 + 64 + 32) + (64 + 64 + 32) + 35


@pytest.mark.parametrize("cell,G", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_param_shapes_one_hot_has_no_embedding(cell, G):
    got = param_shapes(cfg(cell, layers=1, embed=0))
    assert list(got) == ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
                         "head.weight", "head.bias"]
    assert got["rnn.weight_ih_l0"] == (G * H, V)
    assert count_params(cfg(cell, layers=1, embed=0)) == G * H * (V + H + 2) + V * H + V
    model = CharLM(cfg(cell, layers=1, embed=0))
    assert model.flat.size == count_params(model.config) == model.grad_flat.size
    assert all(model.params[k].shape == s and model.grads[k].shape == s for k, s in got.items())


# ----- forward and gradients in float64 -----------------------------------------------------------
@pytest.mark.parametrize("cell,layers,embed,nl", CASES, ids=CASE_IDS)
def test_float64_forward_matches_reference(cell, layers, embed, nl):
    model = CharLM(cfg(cell, layers, embed, nl), seed=3, dtype=np.float64)
    x, y = batch()
    state = rand_state(model)
    want, hT, cT = ref_forward(model, x, state)
    logits, (h, c) = model.logits(x, state)
    assert logits.shape == (T, B, V) and logits.dtype == np.float64
    np.testing.assert_allclose(logits, want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(h, hT, rtol=0, atol=1e-10)
    np.testing.assert_allclose(c, cT if cell == "lstm" else 0.0, rtol=0, atol=1e-10)
    want_loss = ref.xent(want, y).mean()
    total, n, _ = model.loss(x, y, state)
    assert n == N
    assert abs(total / N - want_loss) < 1e-10
    mean, (h2, _) = model.train_step(x, y, state)
    assert abs(float(mean) - want_loss) < 1e-10
    np.testing.assert_allclose(h2, hT, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cell,layers,embed,nl", CASES, ids=CASE_IDS)
def test_float64_grads_match_finite_differences(cell, layers, embed, nl):
    model = CharLM(cfg(cell, layers, embed, nl), seed=3, dtype=np.float64)
    x, y = batch()
    state = rand_state(model)
    model.train_step(x, y, state)
    assert_grads_match_fd(model, lambda: model.loss(x, y, state)[0] / N, saved_grads(model))


@pytest.mark.parametrize("cell", CELLS)
def test_dropout_forward_and_grads(cell):
    config = cfg(cell, layers=2, embed=E, dropout=0.3)
    model = CharLM(config, seed=3, dtype=np.float64)
    x, y = batch()
    state = rand_state(model)
    f = lambda: model.train_step(x, y, state, rng=np.random.default_rng(11))[0]
    loss = float(f())
    grads = saved_grads(model)
    masks = ref.dropout_masks(config, T, B, np.random.default_rng(11))
    logits, _, _ = ref_forward(model, x, state, masks)
    assert abs(loss - ref.xent(logits, y).mean()) < 1e-10
    clean = ref.xent(ref_forward(model, x, state)[0], y).mean()
    assert abs(loss - clean) > 1e-4, "dropout had no effect"
    # evaluation and rng=None are dropout-free
    assert abs(model.loss(x, y, state)[0] / N - clean) < 1e-10
    assert abs(float(model.train_step(x, y, state)[0]) - clean) < 1e-10
    assert_grads_match_fd(model, f, grads)


# ----- float32 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
def test_float32_matches_reference_and_float64(cell):
    config = cfg(cell, layers=2, embed=E)
    m32 = CharLM(config, seed=3, dtype=np.float32)
    assert all(v.dtype == np.float32 for v in m32.params.values())
    x, y = batch()
    state = rand_state(m32)
    want, hT, _ = ref_forward(m32, x, state)
    logits, (h, _) = m32.logits(x, state)
    assert logits.dtype == np.float32
    assert rel_err(logits, want) < 1e-5
    assert rel_err(h, hT) < 1e-5
    loss32, _ = m32.train_step(x, y, state)
    assert abs(float(loss32) - ref.xent(want, y).mean()) < 1e-5
    m64 = CharLM.from_state_dict(config, m32.state_dict(), dtype=np.float64)
    m64.train_step(x, y, tuple(s.astype(np.float64) for s in state))
    for name in m32.names:
        assert rel_err(m32.grads[name], m64.grads[name]) < 1e-4, name


# ----- windows and state --------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
def test_windows_carry_state(cell):
    model = CharLM(cfg(cell, layers=2, embed=E), seed=5, dtype=np.float64)
    x, y = batch(T=2 * T)
    s0 = rand_state(model)
    whole, s_whole = model.logits(x, s0)
    loss_whole = model.loss(x, y, s0)[0]
    # two windows of T, then uneven windows (more shapes than the model's window cache holds)
    for cuts in ([0, T, 2 * T], [0, 1, 4, 5, 9, 10]):
        state, parts, loss_sum = s0, [], 0.0
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            loss_sum += model.loss(x[a:b], y[a:b], state)[0]
            out, state = model.logits(x[a:b], state)
            parts.append(out)
        np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=1e-12)
        for got, want in zip(state, s_whole, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        assert abs(loss_sum - loss_whole) < 1e-10
    # train_step carries the same state
    _, s1 = model.train_step(x[:T], y[:T], s0)
    _, s2 = model.train_step(x[T:], y[T:], s1)
    np.testing.assert_allclose(s2[0], s_whole[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell,layers", [("rnn", 1), ("lstm", 2), ("gru", 1)])
def test_state_resets_and_is_not_aliased(cell, layers):
    model = CharLM(cfg(cell, layers=layers, embed=E), seed=5, dtype=np.float64)
    x, _ = batch()
    h, c = model.init_state(B)
    assert h.shape == c.shape == (layers, B, H) and h.dtype == np.float64
    assert not h.any() and not c.any()
    first, s1 = model.logits(x, model.init_state(B))
    kept = [s.copy() for s in s1]
    second, _ = model.logits(x, s1)
    assert rel_err(second, first) > 1e-6, "carried state had no effect"
    for got, want in zip(s1, kept, strict=True):      # the returned state is not a model buffer
        np.testing.assert_array_equal(got, want)
    again, _ = model.logits(x, model.init_state(B))   # a fresh zero state gives the first result again
    np.testing.assert_array_equal(again, first)


@pytest.mark.parametrize("cell", CELLS)
def test_loss_leaves_no_trace_on_train_step(cell):
    model = CharLM(cfg(cell, layers=2, embed=E, dropout=0.25), seed=5, dtype=np.float64)
    x, y = batch()
    s0 = rand_state(model)
    rng = lambda: np.random.default_rng(4)
    loss_a, st_a = model.train_step(x, y, s0, rng=rng())
    grads_a = saved_grads(model)
    # other data, same shape and other shapes, through every entry point
    x2, y2 = batch(seed=9)
    model.loss(x2, y2, rand_state(model, seed=7))
    model.logits(x2[:2], rand_state(model, seed=8))
    model.train_step(x2, y2, rand_state(model, seed=7))            # no dropout: masks must not leak
    xb, yb = batch(T=4, B=2, seed=2)
    model.train_step(xb, yb, model.init_state(2), rng=np.random.default_rng(1))
    loss_b, st_b = model.train_step(x, y, s0, rng=rng())
    assert float(loss_b) == float(loss_a)
    for name in model.names:
        np.testing.assert_array_equal(model.grads[name], grads_a[name])
    for got, want in zip(st_b, st_a, strict=True):
        np.testing.assert_array_equal(got, want)
    # and without dropout, a fresh model agrees with one that has run a dropout step
    fresh = CharLM(model.config, seed=5, dtype=np.float64)
    assert float(model.train_step(x, y, s0)[0]) == float(fresh.train_step(x, y, s0)[0])


# ----- state dicts --------------------------------------------------------------------------------
@pytest.mark.parametrize("embed", [E, 0])
def test_state_dict_round_trip(embed):
    config = cfg("gru", layers=2, embed=embed)
    model = CharLM(config, seed=1)
    sd = model.state_dict()
    assert list(sd) == model.names
    assert all(sd[k].shape == s and sd[k].dtype == np.float32 for k, s in param_shapes(config).items())
    sd["head.bias"][...] = 0.0                      # a copy: editing it leaves the model alone
    assert model.params["head.bias"].any()
    sd = model.state_dict()
    back = CharLM.from_state_dict(config, sd)
    for k in model.names:
        np.testing.assert_array_equal(back.params[k], sd[k])
    other = CharLM(config, seed=2)
    assert not np.array_equal(other.flat, model.flat)
    other.load_state_dict(sd)
    np.testing.assert_array_equal(other.flat, model.flat)
    x, _ = batch()
    np.testing.assert_array_equal(other.logits(x, other.init_state(B))[0],
                                  model.logits(x, model.init_state(B))[0])
    m64 = CharLM.from_state_dict(config, sd, dtype=np.float64)
    assert m64.flat.dtype == np.float64
    np.testing.assert_array_equal(m64.flat, model.flat.astype(np.float64))


def test_load_state_dict_rejects_wrong_shapes_and_names():
    config = cfg("lstm", layers=2, embed=E)
    model = CharLM(config, seed=1)
    before = model.flat.copy()
    good = model.state_dict()
    bad_shape = dict(good, **{"rnn.weight_hh_l1": np.zeros((4 * H, H + 1), np.float32)})
    missing = {k: v for k, v in good.items() if k != "head.bias"}
    one_hot = CharLM(cfg("lstm", layers=2, embed=0)).state_dict()    # no embed.weight, wider layer 0
    extra = dict(good, **{"rnn.weight_ih_l2": np.zeros((4 * H, H), np.float32)})
    for sd in (bad_shape, missing, one_hot, extra):
        with pytest.raises(CheckpointError):
            model.load_state_dict(sd)
        with pytest.raises(CheckpointError):
            CharLM.from_state_dict(config, sd)
    np.testing.assert_array_equal(model.flat, before)


# ----- initialization -----------------------------------------------------------------------------
def test_same_seed_same_weights_different_seed_different():
    config = cfg("lstm", layers=2, embed=E)
    a, b, c = CharLM(config, seed=7), CharLM(config, seed=7), CharLM(config, seed=8)
    np.testing.assert_array_equal(a.flat, b.flat)
    for name in a.names:
        assert not np.array_equal(a.params[name], c.params[name]), name
    np.testing.assert_array_equal(a.flat, CharLM(config, seed=7, dtype=np.float64).flat.astype(np.float32))


@pytest.mark.parametrize("cell", CELLS)
def test_init_follows_pytorch_defaults(cell):
    config = ModelConfig(vocab_size=50, cell=cell, layers=2, hidden=16, embed=40)
    model = CharLM(config, seed=0)
    bound = 1.0 / np.sqrt(16)
    emb = model.params["embed.weight"]                 # 2000 draws of N(0, 1)
    assert abs(emb.mean()) < 0.1 and abs(emb.std() - 1.0) < 0.1
    assert np.abs(emb).max() > 2.5
    for name in model.names[1:]:                       # U(-1/sqrt(H), 1/sqrt(H))
        v = model.params[name]
        assert np.abs(v).max() <= bound, name
        assert np.abs(v).max() > 0.8 * bound, name
        if v.size >= 400:
            assert abs(v.std() - bound / np.sqrt(3)) < 0.15 * bound / np.sqrt(3), name
    assert not model.grad_flat.any()
