"""The embedding folded into layer 0's input projection (charlm/backends/cpu/fold.py) gives the
same losses, gradients and final states as the unfolded path (Embedding then Recurrent, each on
its own), for every cell, in float32 and float64; and the CPU char LM does fold. The float64
finite-difference checks of the whole model (tests/test_model.py) run through the folded path."""

from __future__ import annotations

import numpy as np
import pytest
from test_model import batch, cfg, rand_state

from charlm.layers import EmbeddingRecurrent
from charlm.model import CharLM


def unfolded(model):
    for layer in model.layers:
        if isinstance(layer, EmbeddingRecurrent):
            layer.folds = False
    return model


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_folded_equals_unfolded(cell, dtype, tol):
    config = cfg(cell, layers=2)
    a = CharLM(config, seed=4, dtype=dtype)
    assert isinstance(a.layers[0], EmbeddingRecurrent) and a.layers[0].folds
    b = unfolded(CharLM.from_state_dict(config, a.state_dict(), dtype=dtype))
    x, y = batch()
    state = tuple(s.astype(dtype) for s in rand_state(a))
    for _ in range(2):  # twice: the second window reuses every buffer
        la, (ha, ca) = a.train_step(x, y, state)
        lb, (hb, cb) = b.train_step(x, y, state)
        assert abs(la - lb) <= tol * abs(lb)
        for name in a.grads:
            np.testing.assert_allclose(a.grads[name], b.grads[name], rtol=tol, atol=tol, err_msg=name)
        np.testing.assert_allclose(ha, hb, rtol=tol, atol=tol)
        np.testing.assert_allclose(ca, cb, rtol=tol, atol=tol)
        sa, na, _ = a.loss(x, y, state)
        sb, nb, _ = b.loss(x, y, state)
        assert na == nb and abs(sa - sb) <= tol * abs(sb)


def test_one_hot_models_do_not_fold():
    model = CharLM(cfg("lstm", layers=1, embed=0), seed=1)
    assert not any(isinstance(layer, EmbeddingRecurrent) for layer in model.layers)


def test_out_of_vocabulary_id_is_an_error():
    model = CharLM(cfg("gru", layers=1), seed=1)
    x, y = batch()
    x[0, 0] = 99
    with pytest.raises(ValueError, match="vocabulary"):
        model.train_step(x, y, model.init_state(x.shape[1]))
