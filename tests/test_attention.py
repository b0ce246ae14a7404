"""charlm.attention against the per-step numpy reference, and float64 finite differences (padded sources)."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_grad
from reference.attention import attend

from charlm import attention as A


def setup(kind, T=3, B=4, S=5, H=4, seed=0):
    r = np.random.default_rng(seed)
    D = H if kind == "dot" else 6
    h = r.standard_normal((T, B, H))
    enc = r.standard_normal((S, B, D))
    lengths = np.array([5, 2, 1, 4][:B])
    w_a = r.standard_normal((H, D)) * 0.5 if kind == "general" else None
    w_c = r.standard_normal((H, D + H)) * 0.5
    b_c = r.standard_normal(H) * 0.1
    return h, enc, lengths, w_a, w_c, b_c


@pytest.mark.parametrize("kind", ["dot", "general"])
def test_forward_matches_reference(kind):
    h, enc, lengths, w_a, w_c, b_c = setup(kind)
    ws = A.forward(h, enc, lengths, kind, w_a, w_c, b_c)
    out, weights = attend(h, enc, lengths, kind, w_a, w_c, b_c)
    np.testing.assert_allclose(ws.out, out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ws.a, weights, rtol=1e-12, atol=1e-12)
    assert (ws.a[1, :, 2:] == 0).all()                 # padding gets no weight


def test_padding_does_not_change_the_result():
    h, enc, lengths, w_a, w_c, b_c = setup("general")
    ws = A.forward(h, enc, lengths, "general", w_a, w_c, b_c)
    enc2 = enc.copy()
    enc2[2:, 1] = 1e3                                   # garbage beyond row 1's length
    ws2 = A.forward(h, enc2, lengths, "general", w_a, w_c, b_c)
    np.testing.assert_array_equal(ws.out, ws2.out)


@pytest.mark.parametrize("kind", ["dot", "general"])
def test_backward_matches_finite_differences(kind):
    h, enc, lengths, w_a, w_c, b_c = setup(kind, seed=1)
    r = np.random.default_rng(2)
    g = r.standard_normal(h.shape)                     # loss = sum(g * out)

    def loss():
        return float((A.forward(h, enc, lengths, kind, w_a, w_c, b_c).out * g).sum())

    ws = A.forward(h, enc, lengths, kind, w_a, w_c, b_c)
    dh, denc = np.empty_like(h), np.empty_like(enc)
    dw_a = np.empty_like(w_a) if w_a is not None else None
    dw_c, db_c = np.empty_like(w_c), np.empty_like(b_c)
    A.backward(ws, g, kind, w_a, w_c, dh, denc, dw_a, dw_c, db_c)
    arrays = [(h, dh), (enc, denc), (w_c, dw_c), (b_c, db_c)] + ([(w_a, dw_a)] if w_a is not None else [])
    for arr, grad in arrays:
        assert check_grad(loss, arr, grad, r, k=12) < 1e-7
    assert (denc[2:, 1] == 0).all() and (denc[1:, 2] == 0).all()   # no gradient into padding
