"""The encoder-decoder (charlm.seq2seq): float64 finite differences of the whole model (bidirectional encoders,
padded sources and targets, masked attention), a numpy reference run pair by pair, padded batches = their pairs
one by one, a PyTorch oracle (nn.LSTM/GRU encoder and decoder + the same attention in
torch) to 1e-5, and decoding."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_grad
from reference import seq2seq as ref

from charlm.pairs import PAD, Batch, make_batch
from charlm.seq2seq import Seq2Seq, Seq2SeqConfig, decoder_logp, param_shapes

CONFIGS = [
    Seq2SeqConfig(src_vocab=9, tgt_vocab=8, cell="lstm", layers=1, hidden=5, embed=3, attention="general"),
    Seq2SeqConfig(src_vocab=9, tgt_vocab=8, cell="lstm", layers=2, hidden=4, embed=3, bidirectional=True,
                  attention="general"),
    Seq2SeqConfig(src_vocab=9, tgt_vocab=8, cell="gru", layers=2, hidden=4, embed=3, attention="dot"),
    Seq2SeqConfig(src_vocab=9, tgt_vocab=8, cell="gru", layers=1, hidden=4, embed=3, bidirectional=True,
                  attention="none"),
    Seq2SeqConfig(src_vocab=9, tgt_vocab=8, cell="rnn", layers=1, hidden=5, embed=3, attention="dot"),
]
IDS = ["lstm-general", "bilstm2-general", "gru2-dot", "bigru-none", "rnn-dot"]


def random_batch(c: Seq2SeqConfig, S=4, B=3, seed=0, src_len=None) -> Batch:
    """Random pairs; sources of lengths src_len (padded with PAD to the longest), else all S long."""
    r = np.random.default_rng(seed)
    lens = [S] * B if src_len is None else list(src_len)
    srcs = [r.integers(4, c.src_vocab, n).astype(np.int32) for n in lens]
    tgts = [r.integers(4, c.tgt_vocab, n).astype(np.int32) for n in r.integers(1, 6, B)]
    return make_batch(srcs, tgts)


def sharpen(m: Seq2Seq, scale=2.0, seed=5):
    r = np.random.default_rng(seed)
    m.flat[:] = r.uniform(-1, 1, m.size) * scale / np.sqrt(m.config.hidden)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_gradients_match_finite_differences(config):
    m = Seq2Seq(config, seed=1, dtype=np.float64)
    sharpen(m)
    batch = random_batch(config, src_len=[4, 2, 3])
    assert (batch.tgt_out == PAD).any()            # padded targets are part of the check

    def loss():
        total, n = m.loss(batch)
        return total / n

    mean = m.train_step(batch)
    assert mean == pytest.approx(loss(), rel=1e-12)
    r = np.random.default_rng(0)
    for name in m.names:
        err = check_grad(loss, m.params[name], m.grads[name], r, k=8, eps=1e-5)
        assert err < 1e-6, (name, err)


def pair(b: Batch, j: int):
    """Row j of a batch as unpadded (source, target) ids."""
    return b.src[:b.src_len[j], j], b.tgt_out[:b.tgt_len[j] - 1, j]


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_encoder_on_a_padded_batch_matches_the_numpy_reference(config):
    m = Seq2Seq(config, seed=2, dtype=np.float64)
    sharpen(m, seed=3)
    b = random_batch(config, B=4, seed=4, src_len=[2, 5, 1, 5])
    assert (b.src == PAD).any()
    e = m.encode(b.src, b.src_len)
    p = m.state_dict()
    for j, n in enumerate(b.src_len):
        enc, h0, c0 = ref.encode(config, p, b.src[:n, j])
        np.testing.assert_allclose(e.enc[:n, j], enc, rtol=1e-12, atol=1e-12)
        assert (e.enc[n:, j] == 0).all()                               # padding reaches no output
        for k in range(config.layers):
            np.testing.assert_allclose(e.h0[k][j], h0[k][0], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(e.c0[k][j], c0[k][0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_padded_batch_equals_its_pairs_one_by_one(config):
    """Loss and gradients of a padded batch (sources 1..6 long, unsorted) = the sums over its pairs run alone."""
    m = Seq2Seq(config, seed=2, dtype=np.float64)
    sharpen(m, seed=6)
    b = random_batch(config, S=6, B=5, seed=4, src_len=[3, 6, 1, 6, 4])
    total, n = m.loss(b)
    assert n == int(b.tgt_len.sum())
    m.train_step(b)
    grad = m.grad_flat * n                                             # gradient of the summed nats
    p = m.state_dict()
    alone, summed = 0.0, np.zeros_like(grad)
    for j in range(b.size):
        src, tgt = pair(b, j)
        one = make_batch([src], [tgt])
        t, k = m.loss(one)
        assert t == pytest.approx(ref.nats(config, p, src, tgt), rel=1e-12)   # the numpy reference
        m.train_step(one)
        alone, summed = alone + t, summed + m.grad_flat * k
    assert total == pytest.approx(alone, rel=1e-12)
    np.testing.assert_allclose(grad, summed, rtol=1e-9, atol=1e-12)
    b2 = make_batch(*zip(*(pair(b, j) for j in range(b.size)), strict=True))   # garbage in the padding: no effect
    b2.src[b2.src == PAD] = 5
    assert m.loss(b2)[0] == pytest.approx(total, rel=1e-12)


def test_state_dict_names_are_pytorch_names():
    c = CONFIGS[1]
    names = set(param_shapes(c))
    assert {"encoder.weight_ih_l1_reverse", "bridge.weight", "bridge_c.bias", "attention.weight",
            "combine.weight", "decoder.bias_hh_l1", "head.weight"} <= names
    assert param_shapes(c)["encoder.weight_ih_l1"] == (16, 8)      # layer 1 reads [fwd; rev]


# ---------------------------------------------------------------- the PyTorch oracle
torch = pytest.importorskip("torch")
nn = torch.nn


class TorchSeq2Seq(nn.Module):
    """The same model written in torch: nn.Embedding, nn.LSTM/GRU/RNN, nn.Linear, masked Luong attention."""

    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.c = c
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[c.cell]
        H, D = c.hidden, c.enc_out
        self.src_embed = nn.Embedding(c.src_vocab, c.embed)
        self.encoder = rnn(c.embed, H, c.layers, bidirectional=c.bidirectional)
        if c.bidirectional:
            self.bridge = nn.Linear(2 * H, H)
            if c.cell == "lstm":
                self.bridge_c = nn.Linear(2 * H, H)
        self.tgt_embed = nn.Embedding(c.tgt_vocab, c.embed)
        self.decoder = rnn(c.embed, H, c.layers)
        if c.attention == "general":
            self.attention = nn.Linear(D, H, bias=False)                  # weight (H, D)
        if c.attention != "none":
            self.combine = nn.Linear(D + H, H)
        self.head = nn.Linear(H, c.tgt_vocab)

    def forward(self, src, src_len, tgt_in, tgt_out):
        c = self.c
        S = src.shape[0]
        x = self.src_embed(src)                                           # (S, B, E)
        if bool((src_len == S).all()):                                    # one length: no packing needed
            enc, state = self.encoder(x)                                  # (S, B, D)
        else:                                                             # padded: each row stops at its length
            packed = nn.utils.rnn.pack_padded_sequence(x, src_len, enforce_sorted=False)
            enc, state = self.encoder(packed)
            enc, _ = nn.utils.rnn.pad_packed_sequence(enc, total_length=S)   # (S, B, D), 0 on padding
        lstm = c.cell == "lstm"
        h, cc = state if lstm else (state, None)
        if c.bidirectional:
            B = src.shape[1]
            h = self.bridge(h.view(c.layers, 2, B, c.hidden).permute(0, 2, 1, 3).reshape(c.layers, B, -1))
            if lstm:
                cc = self.bridge_c(cc.view(c.layers, 2, B, c.hidden).permute(0, 2, 1, 3).reshape(c.layers, B, -1))
        out, _ = self.decoder(self.tgt_embed(tgt_in), (h, cc) if lstm else h)   # (T, B, H)
        if c.attention != "none":
            q = out.transpose(0, 1)                                       # (B, T, H)
            if c.attention == "general":
                q = q @ self.attention.weight                             # (B, T, D)
            e = enc.transpose(0, 1)                                       # (B, S, D)
            scores = q @ e.transpose(1, 2)                                # (B, T, S)
            pad = torch.arange(e.shape[1])[None, :] >= src_len[:, None]
            scores = scores.masked_fill(pad[:, None, :], float("-inf"))
            ctx = torch.softmax(scores, dim=2) @ e                        # (B, T, D)
            out = torch.tanh(self.combine(torch.cat([ctx, out.transpose(0, 1)], dim=2))).transpose(0, 1)
        logits = self.head(out)                                           # (T, B, Vt)
        return nn.functional.cross_entropy(logits.reshape(-1, c.tgt_vocab), tgt_out.reshape(-1), ignore_index=PAD)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_torch_oracle_loss_and_gradients(config):
    m = Seq2Seq(config, seed=3, dtype=np.float32)
    sharpen(m, seed=7)
    batch = random_batch(config, S=6, B=4, seed=1, src_len=[6, 3, 5, 1])
    loss = m.train_step(batch)
    t = TorchSeq2Seq(config)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()}, strict=True)
    as_t = lambda a: torch.from_numpy(a.astype(np.int64))
    tl = t(as_t(batch.src), as_t(batch.src_len), as_t(batch.tgt_in), as_t(batch.tgt_out))
    tl.backward()
    assert loss == pytest.approx(tl.item(), abs=1e-5)
    for name, p in t.named_parameters():
        np.testing.assert_allclose(m.grads[name], p.grad.numpy(), atol=1e-5, rtol=1e-4, err_msg=name)


# ---------------------------------------------------------------- decoding
def test_greedy_beam_and_sampling_decode():
    c = CONFIGS[0]
    m = Seq2Seq(c, seed=4, dtype=np.float64)
    sharpen(m, scale=4.0)
    src = np.array([[4, 5], [6, 7], [8, 4]], np.int32)                  # (S, B) two sources of length 3
    greedy = m.decode(src, method="greedy", max_len=7)
    for j in range(2):                                                    # batch rows decode independently
        assert m.decode(src[:, j:j + 1], method="greedy", max_len=7)[0] == greedy[j]
        assert all(i >= 4 for i in greedy[j])                            # no EOS, PAD, BOS or UNK
    beam1 = m.decode(src, method="beam", beam=1, max_len=7, length_penalty=0.0)
    assert beam1 == greedy
    hyps = m._beam(src[:, :1], 5, 7, 0.0)
    score = lambda ids: sequence_logp(m, src[:, :1], ids)
    assert len(hyps) == 5 and [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    for h in hyps:                        # every ended beam's score is its teacher-forced log-probability
        assert not h.ended or h.logp == pytest.approx(score(h.ids), abs=1e-9)
    assert any(h.ended for h in hyps)
    rng = np.random.default_rng(0)
    s1 = m.decode(src, method="sample", temperature=1.0, rng=np.random.default_rng(3), max_len=7)
    s2 = m.decode(src, method="sample", temperature=1.0, rng=np.random.default_rng(3), max_len=7)
    assert s1 == s2
    assert m.decode(src, method="sample", temperature=0.0, rng=rng, max_len=7) == greedy


@pytest.mark.parametrize("config", CONFIGS[:2], ids=IDS[:2])
def test_decoding_a_padded_batch_equals_decoding_each_source(config):
    m = Seq2Seq(config, seed=4, dtype=np.float64)
    sharpen(m, scale=4.0)
    b = random_batch(config, S=5, B=4, seed=8, src_len=[2, 5, 3, 1])
    limits = [3, 6, 4, 2]
    for method in ("greedy", "beam"):
        batch = m.decode(b.src, lengths=b.src_len, method=method, max_len=limits, beam=3)
        for j in range(b.size):
            alone = m.decode(pair(b, j)[0][:, None], method=method, max_len=limits[j], beam=3)[0]
            assert batch[j] == alone and len(alone) <= limits[j]


def sequence_logp(m: Seq2Seq, src, ids) -> float:
    """log P(ids + EOS | src) from one teacher-forced pass (independent of the step decoder)."""
    b = make_batch([src[:, 0]], [np.asarray(ids, np.int32)])
    _, logits, _ = m.forward(b)
    lp = decoder_logp(logits)
    return float(sum(lp[t, y] for t, y in enumerate(b.tgt_out[:, 0])))


def test_attention_map_rows_are_distributions():
    m = Seq2Seq(CONFIGS[0], seed=4, dtype=np.float64)
    a = m.attention_map(np.array([4, 5, 6, 7], np.int32), [4, 5])
    assert a.shape == (3, 4)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)


def test_scheduled_sampling_replaces_inputs_after_bos_only_on_real_positions():
    c = CONFIGS[0]
    m = Seq2Seq(c, seed=4, dtype=np.float64)
    b = random_batch(c, B=3, seed=2)
    same = m.scheduled_inputs(b, np.random.default_rng(0), 0.0)
    np.testing.assert_array_equal(same, b.tgt_in)
    _, logits, _ = m.forward(b)
    pred = logits.reshape(b.tgt_in.shape + (-1,)).argmax(axis=2)
    full = m.scheduled_inputs(b, np.random.default_rng(0), 1.0)
    real = b.tgt_in[1:] != PAD
    np.testing.assert_array_equal(full[0], b.tgt_in[0])                  # BOS stays
    np.testing.assert_array_equal(full[1:][real], pred[:-1][real])        # every real input is the prediction
    np.testing.assert_array_equal(full[1:][~real], PAD)                   # padding stays padding
    half = m.scheduled_inputs(b, np.random.default_rng(1), 0.5)
    assert ((half[1:] == b.tgt_in[1:]) | (half[1:] == pred[:-1])).all()
    loss = m.train_step(b, np.random.default_rng(0), 0.5)                 # trains on the mixed inputs
    assert np.isfinite(loss) and np.abs(m.grad_flat).sum() > 0
