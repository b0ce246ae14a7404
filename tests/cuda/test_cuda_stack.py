"""The layer stack on the CUDA backend: a padded bidirectional classifier gives the CPU's loss
and gradients (reverse within each length, concatenation, pooling and the dense activation run as
the device kernels of charlm/backends/cuda/seq.py; each op alone: test_cuda_seq.py)."""

from __future__ import annotations

import numpy as np
from gradcheck import rel_err

from charlm.models.sequence import SeqConfig, SeqModel


def test_bidirectional_classifier_matches_cpu():
    cfg = SeqConfig(task="classify", vocab_size=7, num_labels=3, cell="gru", hidden=3, embed=4,
                    bidirectional=True, dense=4)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, (4, 3)).astype(np.int32)
    y, lens = np.array([0, 2, 1], np.int32), np.array([4, 2, 3])
    got = {}
    for device in ("cpu", "cuda"):
        m = SeqModel(cfg, seed=1, device=device)
        loss = m.train_step(ids, y, lens)
        got[device] = (loss, {k: np.array(m.backend.to_host(v)) for k, v in m.P.grads.items()})
    assert abs(got["cpu"][0] - got["cuda"][0]) < 1e-5
    for k, v in got["cpu"][1].items():
        assert rel_err(got["cuda"][1][k], v) < 1e-5, k
