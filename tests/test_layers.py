"""charlm.layers and charlm.heads: numpy references one sequence at a time, padded batches
against the sequences run one by one, float64 finite differences (bidirectional stacks,
variable lengths, every layer and head)."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_grad, rel_err
from reference import stack as ref

from charlm.heads import SeqSoftmax, SigmoidBinary, StepSoftmax
from charlm.layers import Batch, Bidirectional, Dense, Dropout, Embedding, OneHot, Pool, Recurrent
from charlm.models.base import Params, Sequential

T, B, V, E, H = 5, 3, 7, 4, 3
LENGTHS = [5, 2, 4]


def ids_and_batch(seed=0, lengths=LENGTHS):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (T, B)).astype(np.int32)  # pads hold real ids too: they must not leak
    return ids, Batch(T, B, lengths)


def build(layers, seed=1):
    return Params(layers, seed=seed, dtype=np.float64), Sequential(layers)


def run(P, seq, head, ids, targets, batch):
    """Mean loss and host copies of every gradient."""
    out = seq.forward(ids, batch)
    s, n, d = head.loss(P.backend, out, targets, batch, grad=True)
    seq.backward(d, batch)
    return s / n, {k: np.array(v) for k, v in P.grads.items()}


def classifier_layers(cell, pool, C, bidir=True):
    rec = Bidirectional("rnn", cell, E, H) if bidir else Recurrent("rnn", cell, E, H)
    F = rec.out_features
    return [Embedding("embed", V, E), rec, Pool(pool, F, nrev=H if bidir else 0),
            Dense("fc", F, 4, "relu"), Dense("head", 4, C)]


def reference_classifier(params, cell, pool, ids_b, bidir=True):
    x = params["embed.weight"][ids_b]
    y = ref.bidirectional(cell, x, params, "rnn") if bidir else ref.recurrent(cell, x, params, "rnn")
    v = ref.pool_last(y, H if bidir else 0) if pool == "last" else ref.pool_mean(y)
    v = ref.dense(v[None], params["fc.weight"], params["fc.bias"], "relu")
    return ref.dense(v, params["head.weight"], params["head.bias"])[0]


def test_reverse_seq_reverses_within_each_length():
    from charlm.backends.cpu import reverse_seq

    x = np.arange(T * B * 2, dtype=np.float64).reshape(T, B, 2)
    out = np.empty_like(x)
    reverse_seq(out, x, np.array(LENGTHS, np.int64))
    for b, L in enumerate(LENGTHS):
        np.testing.assert_array_equal(out[:L, b], x[:L, b][::-1])
        np.testing.assert_array_equal(out[L:, b], x[L:, b])
    back = np.empty_like(x)
    reverse_seq(back, out, np.array(LENGTHS, np.int64))
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("cell,relu", [("lstm", False), ("gru", False), ("rnn", True)])
def test_bidirectional_stack_matches_reference_per_sequence(cell, relu):
    layers = [Embedding("embed", V, E), Bidirectional("rnn", cell, E, H, index=0, relu=relu),
              Bidirectional("rnn", cell, 2 * H, H, index=1, relu=relu)]
    P, seq = build(layers)
    assert list(P.shapes)[1:5] == [f"rnn.{n}_l0" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert list(P.shapes)[5] == "rnn.weight_ih_l0_reverse" and P.shapes["rnn.weight_ih_l1"][1] == 2 * H
    ids, batch = ids_and_batch()
    y = np.array(seq.forward(ids, batch))
    sd = P.state_dict()
    for b, L in enumerate(LENGTHS):
        x = sd["embed.weight"][ids[:L, b]]
        want = ref.bidirectional(cell, ref.bidirectional(cell, x, sd, "rnn", 0, relu), sd, "rnn", 1, relu)
        assert rel_err(y[:L, b], want) < 1e-12, b


@pytest.mark.parametrize("cell,pool,bidir", [("lstm", "last", True), ("gru", "mean", True), ("rnn", "last", False)])
def test_classifier_padded_batch_equals_sequences_one_by_one(cell, pool, bidir):
    C = 3
    P, seq = build(classifier_layers(cell, pool, C, bidir))
    ids, batch = ids_and_batch(2)
    y = np.array([0, 2, 1])
    loss, g = run(P, seq, SeqSoftmax(), ids, y, batch)
    sd = P.state_dict()
    logits = np.stack([reference_classifier(sd, cell, pool, ids[:L, b], bidir) for b, L in enumerate(LENGTHS)])
    assert abs(loss - ref.softmax_xent(logits, y) / B) < 1e-12
    total = {k: np.zeros_like(v) for k, v in g.items()}
    for b, L in enumerate(LENGTHS):  # each sequence alone: B = 1, T = L, no padding at all
        lb, gb = run(P, seq, SeqSoftmax(), np.ascontiguousarray(ids[:L, b:b + 1]), y[b:b + 1], Batch(L, 1))
        assert abs(lb - ref.softmax_xent(logits[b:b + 1], y[b:b + 1])) < 1e-12
        for k in total:
            total[k] += gb[k] / B
    for k in g:
        assert rel_err(g[k], total[k]) < 1e-10, k


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_classifier_gradcheck_float64(head):
    C = 2 if head == "softmax" else 1
    P, seq = build(classifier_layers("lstm", "last", C))
    hd = SeqSoftmax() if head == "softmax" else SigmoidBinary()
    ids, batch = ids_and_batch(3)
    y = np.array([1, 0, 1])
    _, g = run(P, seq, hd, ids, y, batch)

    def loss():
        s, n, _ = hd.loss(P.backend, seq.forward(ids, batch), y, batch, grad=False)
        return s / n

    rng = np.random.default_rng(0)
    for name, view in P.params.items():
        err = check_grad(loss, view, g[name], rng, k=6)
        assert err < 1e-6, (name, err)


def test_tagger_bidirectional_stack_gradcheck_and_pads():
    """Two stacked Bidirectional GRUs, dropout off, a tag per character; pads left out of the loss."""
    layers = [OneHot(V), Bidirectional("rnn", "gru", V, H, index=0), Dropout(0.3, 2 * H),
              Bidirectional("rnn", "gru", 2 * H, H, index=1), Dense("head", 2 * H, 3)]
    P, seq = build(layers)
    ids, batch = ids_and_batch(4)
    tags = np.random.default_rng(5).integers(0, 3, (T, B))
    loss, g = run(P, seq, StepSoftmax(), ids, tags, batch)
    M = sum(LENGTHS)

    def f():
        s, n, _ = StepSoftmax().loss(P.backend, seq.forward(ids, batch), tags, batch, grad=False)
        assert n == M
        return s / n

    assert abs(f() - loss) < 1e-12
    rng = np.random.default_rng(1)
    for name, view in P.params.items():
        assert check_grad(f, view, g[name], rng, k=6) < 1e-6, name
    total = {k: np.zeros_like(v) for k, v in g.items()}
    for b, L in enumerate(LENGTHS):
        lb, gb = run(P, seq, StepSoftmax(), np.ascontiguousarray(ids[:L, b:b + 1]),
                     np.ascontiguousarray(tags[:L, b:b + 1]), Batch(L, 1))
        for k in total:
            total[k] += gb[k] * L / M
    for k in g:
        assert rel_err(g[k], total[k]) < 1e-10, k


def test_dense_activations_and_dropout():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((T, B, 4))
    for act in ("none", "relu", "sigmoid", "tanh"):
        layers = [Dense("d", 4, 3, act)]
        P, seq = build(layers)
        batch = Batch(T, B)
        y = np.array(seq.forward(x, batch))
        sd = P.state_dict()
        assert rel_err(y, ref.dense(x, sd["d.weight"], sd["d.bias"], act)) < 1e-12, act
        R = rng.standard_normal(y.shape)
        dx = np.array(seq.backward(R, batch))
        xx = x.copy()

        def f(xx=xx, seq=seq, batch=batch, R=R):
            return float((np.asarray(seq.forward(xx, batch)) * R).sum())

        assert check_grad(f, xx, dx, rng, k=10) < 1e-7, act
        assert check_grad(f, P.params["d.weight"], np.array(P.grads["d.weight"]), rng, k=6) < 1e-7, act
    drop = Dropout(0.5, 4)
    P, seq = build([drop])
    train = Batch(T, B, rng=np.random.default_rng(0))
    y = np.array(seq.forward(x, train))
    kept = y != 0
    assert 0 < kept.mean() < 1 and np.allclose(y[kept], 2 * x[kept])
    np.testing.assert_array_equal(np.array(seq.backward(np.ones_like(x), train)), 2.0 * kept)
    assert seq.forward(x, Batch(T, B)) is x  # evaluation: identity


def test_heads_match_reference():
    from charlm.backends import get

    be = get("cpu")
    rng = np.random.default_rng(7)
    z = rng.standard_normal((B, 1))
    y = np.array([1, 0, 1])
    s, n, d = SigmoidBinary().loss(be, z, y, Batch(1, B))
    assert n == B and abs(s - ref.sigmoid_bce(z[:, 0], y)) < 1e-12
    np.testing.assert_allclose(d[:, 0], (1 / (1 + np.exp(-z[:, 0])) - y) / B)
    np.testing.assert_allclose(SigmoidBinary.probs(z).sum(1), 1)
    logits = rng.standard_normal((T, B, 4))
    tags = rng.integers(0, 4, (T, B))
    batch = Batch(T, B, LENGTHS)
    s, n, d = StepSoftmax().loss(be, logits, tags, batch)
    m = batch.mask()
    assert n == m.sum() and abs(s - ref.softmax_xent(logits[m], tags[m])) < 1e-10
    assert not np.asarray(d)[~m].any()  # pads get no gradient


def test_batch_rejects_bad_lengths():
    with pytest.raises(ValueError, match="lengths"):
        Batch(3, 2, [0, 3])
    with pytest.raises(ValueError, match="lengths"):
        Batch(3, 2, [4, 3])
