"""A character encoder-decoder: embedding -> stacked (optionally bidirectional) encoder -> bridge ->
stacked decoder -> Luong attention -> softmax head; teacher forcing, decoding (greedy, sampling, beam).

Architecture (parameter names and shapes are PyTorch's, so the state dict loads into a torch module built
of nn.Embedding/nn.LSTM/nn.Linear with strict=True; see tests/test_seq2seq.py's oracle):
    src_embed.weight (Vs, E)                            source characters
    encoder.weight_ih_l{k}[_reverse] ...                nn.LSTM/GRU/RNN(E, H, L, bidirectional=...)
    bridge.weight (H, 2H), bridge.bias (H,)             bidirectional only: the decoder's initial h of layer k
    bridge_c.weight, bridge_c.bias                      is W [h_fwd_k; h_rev_k] + b (a learned linear projection of
                                                        the concatenated final states; c likewise for LSTM).
                                                        Unidirectional: the encoder's final states are copied.
    tgt_embed.weight (Vt, E)                            target characters (BOS first)
    decoder.weight_ih_l{k} ...                          nn.LSTM/GRU/RNN(E, H, L): no input feeding
    attention.weight (H, D)                             general attention only (D = H, or 2H bidirectional)
    combine.weight (H, D + H), combine.bias (H,)        tanh(W_c [context; h]) before the head (attention only)
    head.weight (Vt, H), head.bias (Vt,)
Without attention the head reads the decoder's top state directly.

Variable lengths: sources are padded with PAD after their length (``src_len``); the encoder (charlm.encoder)
runs each row only to its own length, like PyTorch's pack_padded_sequence, so its outputs are 0 on padding and
each row's final state is its own last step's; attention is masked by ``src_len``. Targets are padded with PAD,
whose positions carry no loss and no gradient. Loss: mean nats per target symbol (EOS included) over the real
positions of the batch. A padded batch gives the loss and gradients of its pairs run one by one (tested).

Scheduled sampling (``ss_rate`` p > 0), the two-pass form of Mihaylova & Liu (2019): a teacher-forced pass
without gradients predicts every step (argmax); then each decoder input after BOS is replaced by the previous
step's prediction with probability p, and the usual teacher-forced forward/backward runs on those inputs. This
keeps the decoder's input projection one GEMM (an exact step-by-step scheme could not).

Decoding (greedy, sampling, beam) never emits PAD, BOS or UNK: their logits are set to -inf before the
softmax (``decoder_logp``), so scores are log-probabilities of that renormalised distribution.

Runs on the CPU backend; cells, embeddings, the head GEMM and the loss go through the backend contract, the
attention and bridge are NumPy (charlm.attention, charlm.encoder). The decoder's layers are
charlm.layers.Recurrent; the encoder calls the cells per length segment (charlm.encoder), a bidirectional
layer's outputs concatenated [fwd; rev] as charlm.layers.Bidirectional does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import attention as att
from . import backends
from .backends import CellState
from .beam import beam_search, log_softmax
from .config import CELLS, GATES, _check, _DictMixin
from .encoder import Encoded, Encoder
from .layers import Batch as Steps
from .layers import Recurrent
from .pairs import BOS, EOS, PAD, UNK, Batch

DECODERS = ("greedy", "sample", "beam")


@dataclass(frozen=True)
class Seq2SeqConfig(_DictMixin):
    src_vocab: int
    tgt_vocab: int
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 128
    embed: int = 32
    bidirectional: bool = False
    attention: str = "general"       # none | dot | general

    def __post_init__(self):
        _check(self.cell in CELLS, f"unknown cell {self.cell!r}: choose one of {', '.join(CELLS)}")
        _check(self.attention in att.KINDS, f"--attention must be one of {', '.join(att.KINDS)}")
        for name in ("src_vocab", "tgt_vocab", "layers", "hidden", "embed"):
            v = getattr(self, name)
            _check(isinstance(v, int) and v >= 1, f"--{name.replace('_', '-')} must be a positive integer")
        _check(not (self.attention == "dot" and self.bidirectional),
               "--attention dot needs encoder outputs as wide as the decoder; a bidirectional encoder's are 2H: "
               "use --attention general")

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    @property
    def enc_out(self) -> int:
        """D: width of an encoder output (H, or 2H bidirectional)."""
        return self.hidden * (2 if self.bidirectional else 1)


def param_shapes(c: Seq2SeqConfig) -> dict[str, tuple[int, ...]]:
    G, H, E, D = c.gates, c.hidden, c.embed, c.enc_out
    shapes: dict[str, tuple[int, ...]] = {"src_embed.weight": (c.src_vocab, E)}
    dirs = ("", "_reverse") if c.bidirectional else ("",)
    for k in range(c.layers):
        for sfx in dirs:
            inp = E if k == 0 else D
            shapes[f"encoder.weight_ih_l{k}{sfx}"] = (G * H, inp)
            shapes[f"encoder.weight_hh_l{k}{sfx}"] = (G * H, H)
            shapes[f"encoder.bias_ih_l{k}{sfx}"] = (G * H,)
            shapes[f"encoder.bias_hh_l{k}{sfx}"] = (G * H,)
    if c.bidirectional:
        shapes["bridge.weight"], shapes["bridge.bias"] = (H, 2 * H), (H,)
        if c.cell == "lstm":
            shapes["bridge_c.weight"], shapes["bridge_c.bias"] = (H, 2 * H), (H,)
    shapes["tgt_embed.weight"] = (c.tgt_vocab, E)
    for k in range(c.layers):
        inp = E if k == 0 else H
        shapes[f"decoder.weight_ih_l{k}"] = (G * H, inp)
        shapes[f"decoder.weight_hh_l{k}"] = (G * H, H)
        shapes[f"decoder.bias_ih_l{k}"] = (G * H,)
        shapes[f"decoder.bias_hh_l{k}"] = (G * H,)
    if c.attention == "general":
        shapes["attention.weight"] = (H, D)
    if c.attention != "none":
        shapes["combine.weight"], shapes["combine.bias"] = (H, D + H), (H,)
    shapes["head.weight"], shapes["head.bias"] = (c.tgt_vocab, H), (c.tgt_vocab,)
    return shapes


def summary_rows(c: Seq2SeqConfig) -> list[tuple[str, str, int]]:
    """(part, description, parameters) for ``charlm info``: encoder, bridge, attention, decoder, head."""
    shapes = param_shapes(c)
    count = lambda pred: sum(math.prod(s) for n, s in shapes.items() if pred(n))
    direction = "bidirectional " if c.bidirectional else ""
    att_desc = {"none": "none", "dot": "Luong dot", "general": "Luong general"}[c.attention]
    rows = [("source embedding", f"Embedding({c.src_vocab}, {c.embed})", count(lambda n: n.startswith("src_"))),
            ("encoder", f"{direction}{c.cell.upper()}({c.hidden}) x {c.layers}",
             count(lambda n: n.startswith("encoder."))),
            ("bridge", "Linear(2H -> H) on [fwd; rev] final states" if c.bidirectional else "copy final states",
             count(lambda n: n.startswith("bridge"))),
            ("target embedding", f"Embedding({c.tgt_vocab}, {c.embed})", count(lambda n: n.startswith("tgt_"))),
            ("decoder", f"{c.cell.upper()}({c.hidden}) x {c.layers}", count(lambda n: n.startswith("decoder."))),
            ("attention", att_desc + (" + tanh(W_c[c;h])" if c.attention != "none" else ""),
             count(lambda n: n.startswith(("attention.", "combine.")))),
            ("head", f"Dense({c.tgt_vocab}, softmax)", count(lambda n: n.startswith("head.")))]
    return rows


def _state(layer: Recurrent):
    """Copies of a Recurrent layer's final (h, c) (B, H); c zeros for rnn/gru (its buffers are reused)."""
    st = layer.final_state()
    h = np.array(st.h, copy=True)
    return h, (np.array(st.c, copy=True) if st.c is not None else np.zeros_like(h))


class Seq2Seq:
    """The encoder-decoder's parameters (one flat buffer, PyTorch-named views), forward/backward and decoding."""

    def __init__(self, config: Seq2SeqConfig, *, seed: int = 0, dtype=np.float32, device: str = "cpu"):
        self.config = config
        self.dtype = np.dtype(dtype)
        self.device = device
        self.backend = backends.get(device)
        self.shapes = param_shapes(config)
        self.names = list(self.shapes)
        self.size = sum(math.prod(s) for s in self.shapes.values())
        self.flat = np.empty(self.size, self.dtype)          # (P,)
        self.grad_flat = np.zeros(self.size, self.dtype)     # (P,)
        self.params = self._views(self.flat)
        self.grads = self._views(self.grad_flat)
        rng = np.random.default_rng(seed)
        for name, v in self.params.items():
            if name.endswith("embed.weight"):
                v[...] = rng.standard_normal(v.shape)
            else:
                fan_in = self.shapes[name.replace("bias", "weight")][-1] if not name.startswith(
                    ("encoder.", "decoder.")) else config.hidden
                bound = 1.0 / math.sqrt(fan_in)
                v[...] = rng.uniform(-bound, bound, v.shape)
        c, H = config, config.hidden
        self.encoder = Encoder(c, self.backend, self.dtype, self.params, self.grads)   # charlm.encoder
        self.decoder = [Recurrent("decoder", c.cell, c.embed if k == 0 else H, H, index=k) for k in range(c.layers)]
        for layer in self.decoder:
            layer.bind(self.backend, self.dtype, self.params, self.grads)

    def _views(self, flat) -> dict:
        views, off = {}, 0
        for name, shape in self.shapes.items():
            n = math.prod(shape)
            views[name] = flat[off:off + n].reshape(shape)
            off += n
        return views

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: np.array(v, copy=True) for name, v in self.params.items()}

    def load_state_dict(self, sd: dict) -> None:
        from .checkpoint import validate_state_dict

        validate_state_dict(sd, self.shapes)
        for name in self.names:
            self.params[name][...] = sd[name]

    @classmethod
    def from_state_dict(cls, config: Seq2SeqConfig, sd: dict, *, dtype=np.float32) -> Seq2Seq:
        m = cls(config, dtype=dtype)
        m.load_state_dict(sd)
        return m

    def encode(self, src, lengths=None) -> Encoded:
        """src (S, B) int32 source ids, PAD after each row's length (lengths (B,); None: all S)."""
        return self.encoder.forward(src, lengths)

    # ------------------------------------------------------------------ decoder (all steps at once)
    def _decode_forward(self, e: Encoded, tgt_in):
        """tgt_in (T, B) -> (logits (T*B, Vt), tape for backward)."""
        c, be, p = self.config, self.backend, self.params
        T, B = tgt_in.shape
        x = np.empty((T, B, c.embed), self.dtype)                       # (T, B, E)
        be.embed_forward(x, np.ascontiguousarray(tgt_in), p["tgt_embed.weight"])
        steps = Steps(T, B)
        inp = x
        for k, layer in enumerate(self.decoder):
            inp = layer.forward(inp, steps, CellState(e.h0[k], e.c0[k]))   # (T, B, H)
        layers = steps
        aws = None
        top = inp
        if c.attention != "none":
            aws = att.forward(inp, e.enc, e.lengths, c.attention, p.get("attention.weight"),
                              p["combine.weight"], p["combine.bias"])
            top = aws.out                                               # (T, B, H)
        top2 = np.ascontiguousarray(top.reshape(T * B, c.hidden))       # (N, H)
        logits = np.empty((T * B, c.tgt_vocab), self.dtype)             # (N, Vt)
        be.linear_forward(logits, top2, p["head.weight"], p["head.bias"])
        return logits, (x, layers, aws, top2)

    def forward(self, batch: Batch, tgt_in=None):
        """Teacher-forced forward: (Encoded, logits (T*B, Vt), tape)."""
        e = self.encode(batch.src, batch.src_len)
        logits, tape = self._decode_forward(e, batch.tgt_in if tgt_in is None else tgt_in)
        return e, logits, tape

    def loss(self, batch: Batch) -> tuple[float, int]:
        """(sum of nats over the real target positions, their number). No gradients."""
        _, logits, _ = self.forward(batch)
        y = batch.tgt_out.reshape(-1)
        idx = np.flatnonzero(y != PAD)
        total = self.backend.xent(np.ascontiguousarray(logits[idx]), np.ascontiguousarray(y[idx]), None, 1.0)
        return float(total), idx.size

    def train_step(self, batch: Batch, rng=None, ss_rate: float = 0.0) -> float:
        """Forward and backward over one batch; fills ``grads``; returns mean nats per target symbol."""
        c, be, p, g = self.config, self.backend, self.params, self.grads
        tgt_in = batch.tgt_in
        if ss_rate > 0 and rng is not None:
            tgt_in = self.scheduled_inputs(batch, rng, ss_rate)
        e, logits, (x, layers, aws, top2) = self.forward(batch, tgt_in)
        T, B = tgt_in.shape
        y = batch.tgt_out.reshape(-1)
        idx = np.flatnonzero(y != PAD)
        sel = np.ascontiguousarray(logits[idx])                        # (n, Vt)
        dsel = np.empty_like(sel)                                       # (n, Vt)
        loss = be.xent(sel, np.ascontiguousarray(y[idx]), dsel, 1.0 / idx.size)
        dlogits = np.zeros_like(logits)                                 # (N, Vt) zero on padding
        dlogits[idx] = dsel
        self.grad_flat[:] = 0.0
        dtop = np.empty((T * B, c.hidden), self.dtype)                  # (N, H)
        be.linear_backward(dtop, g["head.weight"], g["head.bias"], dlogits, top2, p["head.weight"])
        dtop = dtop.reshape(T, B, c.hidden)
        denc = np.zeros_like(e.enc)                                     # (S, B, D)
        if aws is not None:
            dh = np.empty((T, B, c.hidden), self.dtype)
            dw_a = g.get("attention.weight")
            att.backward(aws, dtop, c.attention, p.get("attention.weight"), p["combine.weight"], dh, denc,
                         dw_a, g["combine.weight"], g["combine.bias"])
            dtop = dh
        dh0, dc0 = [None] * c.layers, [None] * c.layers
        dout = np.ascontiguousarray(dtop)
        for k in reversed(range(c.layers)):
            layer = self.decoder[k]
            dout = layer.backward(dout, layers)                        # overwrites the layer's gradients
            dh0[k] = np.array(layer.dstate0.h, copy=True)
            dc0[k] = np.array(layer.dstate0.c, copy=True)
        be.embed_backward(g["tgt_embed.weight"], np.ascontiguousarray(tgt_in), np.ascontiguousarray(dout))
        self.encoder.backward(e, denc, dh0, dc0)
        return float(loss) / idx.size

    def scheduled_inputs(self, batch: Batch, rng, rate: float):
        """Decoder inputs with each one after BOS replaced by the teacher-forced prediction with prob. rate."""
        _, logits, _ = self.forward(batch)
        T, B = batch.tgt_in.shape
        pred = logits.reshape(T, B, -1).argmax(axis=2).astype(np.int32)   # (T, B) prediction of step t
        tin = batch.tgt_in.copy()
        swap = rng.random((T - 1, B)) < rate
        swap &= (batch.tgt_in[1:] != PAD)
        tin[1:][swap] = pred[:-1][swap]
        return tin

    # ------------------------------------------------------------------ decoding, one step at a time
    def step(self, e: Encoded, x, state):
        """x (B,) ids, state (h, c) lists of (B, H) -> (logp (B, Vt) float64, new state, attention (B, S) | None)."""
        c, be, p = self.config, self.backend, self.params
        B = x.shape[0]
        inp = np.empty((1, B, c.embed), self.dtype)
        be.embed_forward(inp, np.ascontiguousarray(x.reshape(1, B)), p["tgt_embed.weight"])
        hs, cs = [], []
        steps = Steps(1, B)
        for k, layer in enumerate(self.decoder):
            inp = layer.forward(inp, steps, CellState(state[0][k], state[1][k]))   # (1, B, H)
            h, cc = _state(layer)
            hs.append(h)
            cs.append(cc)
        weights = None
        if c.attention != "none":
            aws = att.forward(inp, e.enc, e.lengths, c.attention, p.get("attention.weight"),
                              p["combine.weight"], p["combine.bias"])
            inp, weights = aws.out, aws.a[:, 0]
        logits = inp[0] @ p["head.weight"].T + p["head.bias"]           # (B, Vt)
        return decoder_logp(logits), (hs, cs), weights

    def decode(self, src, *, lengths=None, method: str = "greedy", max_len=50, beam: int = 4,
               length_penalty: float = 1.0, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
               rng=None) -> list[list[int]]:
        """Target ids (EOS excluded) for each source row of src (S, B), PAD after its length (lengths (B,),
        None: all S); max_len: symbols per row, one int or (B,)."""
        if method not in DECODERS:
            raise ValueError(method)
        B = src.shape[1]
        lengths = np.full(B, src.shape[0], np.int64) if lengths is None else np.asarray(lengths, np.int64)
        limit = np.broadcast_to(np.asarray(max_len, np.int64), (B,))
        if method == "beam":
            return [self._beam(src[:lengths[b], b:b + 1], beam, int(limit[b]), length_penalty)[0].ids
                    for b in range(B)]
        e = self.encode(src, lengths)
        state = (e.h0, e.c0)
        x = np.full(B, BOS, np.int32)
        out = [[] for _ in range(B)]
        done = limit <= 0
        for _ in range(int(limit.max(initial=0))):
            if done.all():
                break
            logp, state, _ = self.step(e, x, state)
            x = pick(logp, temperature if method == "sample" else 0.0, top_k, top_p, rng).astype(np.int32)
            for b in np.flatnonzero(~done):
                if x[b] == EOS:
                    done[b] = True
                else:
                    out[b].append(int(x[b]))
                    done[b] = len(out[b]) >= limit[b]
        return out

    def _beam(self, src, beam: int, max_len: int, length_penalty: float):
        """Beam search hypotheses for one source src (S, 1), best first (ids end without EOS)."""
        e = self.encode(np.ascontiguousarray(np.repeat(src, beam, axis=1)))
        step = lambda x, st: self.step(e, x, st)[:2]
        reorder = lambda st, rows: ([np.ascontiguousarray(h[rows]) for h in st[0]],
                                    [np.ascontiguousarray(h[rows]) for h in st[1]])
        hyps = beam_search(step, reorder, (e.h0, e.c0), BOS, beam=beam, max_len=max_len,
                           length_penalty=length_penalty, ends=lambda ids: ids[-1] == EOS)
        for h in hyps:
            if h.ended:
                h.ids = h.ids[:-1]
        return hyps

    def attention_map(self, src, tgt_ids) -> np.ndarray:
        """Attention weights (T, S) of one pair, teacher-forced on tgt_ids (EOS appended)."""
        S = src.shape[0]
        e = self.encode(src.reshape(S, 1))
        state, x, rows = (e.h0, e.c0), BOS, []
        for y in list(tgt_ids) + [EOS]:
            _, state, w = self.step(e, np.array([x], np.int32), state)
            rows.append(w[0])
            x = y
        return np.array(rows)


def decoder_logp(logits) -> np.ndarray:
    """log-probabilities (B, Vt) float64 for decoding: PAD, BOS and UNK (never targets) get -inf."""
    z = np.array(logits, dtype=np.float64)
    z[:, [PAD, BOS, UNK]] = -np.inf
    return log_softmax(z)


def pick(logp, temperature: float, top_k: int, top_p: float, rng) -> np.ndarray:
    """One symbol per row of logp (B, V): argmax when temperature is 0, else a draw (as ``charlm sample``)."""
    if temperature <= 0 or top_k == 1:
        return logp.argmax(axis=1)
    out = np.empty(logp.shape[0], np.int64)
    for b, row in enumerate(logp):
        q = np.exp((row - row.max()) / temperature)
        order = np.lexsort((np.arange(q.size), -q))
        keep = order[:top_k] if 0 < top_k < q.size else order
        if top_p < 1.0:
            mass = np.cumsum(q[keep])
            keep = keep[:int(np.searchsorted(mass, top_p * mass[-1]) + 1)]
        pk = np.zeros_like(q)
        pk[keep] = q[keep]
        out[b] = rng.choice(q.size, p=pk / pk.sum())
    return out
