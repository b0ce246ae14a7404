"""PyTorch as the oracle for the layer stack: nn.LSTM / nn.GRU(bidirectional=True, num_layers=2)
load a charlm state dict with strict=True and give the same outputs and gradients (float32,
1e-5) on a padded batch run as packed sequences; and the same for a whole classifier."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import rel_err
from torchoracle import oracle

from charlm.layers import Batch, Bidirectional
from charlm.models.base import Params, Sequential
from charlm.models.sequence import SeqConfig, SeqModel

torch = oracle()
torch.set_num_threads(1)
nn = torch.nn

T, B, I, H = 6, 4, 5, 4
LENGTHS = [6, 3, 1, 5]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bidirectional_stack_matches_torch_packed(cell):
    layers = [Bidirectional("rnn", cell, I, H, index=0), Bidirectional("rnn", cell, 2 * H, H, index=1)]
    P = Params(layers, seed=3, dtype=np.float32)
    seq = Sequential(layers)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    R = rng.standard_normal((T, B, 2 * H)).astype(np.float32)
    mask = (np.arange(T)[:, None] < np.array(LENGTHS)[None, :])[:, :, None]
    batch = Batch(T, B, LENGTHS)
    y = np.array(seq.forward(x, batch))
    dx = np.array(seq.backward((R * mask).astype(np.float32), batch))

    m = (nn.LSTM if cell == "lstm" else nn.GRU)(I, H, num_layers=2, bidirectional=True)
    m.load_state_dict({k[len("rnn."):]: torch.from_numpy(v) for k, v in P.state_dict().items()}, strict=True)
    xt = torch.from_numpy(x).requires_grad_(True)
    packed = nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(LENGTHS), enforce_sorted=False)
    out, _ = m(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    (out * torch.from_numpy(R * mask)).sum().backward()
    assert rel_err(y * mask, out.detach().numpy()) < 1e-5
    assert rel_err(dx, xt.grad.numpy()) < 1e-5
    for name, p in m.named_parameters():
        assert rel_err(P.grads["rnn." + name], p.grad.numpy()) < 1e-5, name


class TorchClassifier(nn.Module):
    """Embedding -> bidirectional LSTM -> [fwd final, rev final] -> Dense(relu) -> Dense."""

    def __init__(self, V, E, H, D, C):
        super().__init__()
        self.embed = nn.Embedding(V, E)
        self.rnn = nn.LSTM(E, H, bidirectional=True)
        self.fc = nn.Linear(2 * H, D)
        self.head = nn.Linear(D, C)

    def forward(self, ids, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(ids), lengths, enforce_sorted=False)
        _, (h, _) = self.rnn(packed)  # h (2, B, H): forward final, reverse final
        return self.head(torch.relu(self.fc(torch.cat([h[0], h[1]], dim=1))))


def test_classifier_matches_torch():
    cfg = SeqConfig(task="classify", vocab_size=9, num_labels=3, cell="lstm", hidden=H, embed=I,
                    bidirectional=True, dense=5)
    model = SeqModel(cfg, seed=2)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 9, (T, B)).astype(np.int32)
    y = np.array([0, 2, 1, 2], np.int32)
    loss = model.train_step(ids, y, np.array(LENGTHS))
    tm = TorchClassifier(9, I, H, 5, 3)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=True)
    logits = tm(torch.from_numpy(ids).long(), torch.tensor(LENGTHS))
    tl = nn.functional.cross_entropy(logits, torch.from_numpy(y).long())
    tl.backward()
    assert abs(loss - tl.item()) < 1e-5
    grads = model.P.grads
    for name, p in tm.named_parameters():
        assert rel_err(grads[name], p.grad.numpy()) < 1e-5, name
