"""The seq2seq encoder over a padded batch: source embedding -> stacked (optionally bidirectional) recurrent
layers run per length segment -> the bridge to the decoder's initial state.

Padded sources: src (S, B) holds each source left-aligned, PAD after its length L_b. The recurrent layers run
the batch the way PyTorch's pack_padded_sequence does, on the backend's cell contract only (alloc, forward,
backward): the rows are sorted longest first and time is cut at every distinct length, so segment j covers
steps [t_{j-1}, t_j) of the rows still running (a prefix of the sorted rows), starting from the previous
segment's final state. Padding is never computed: it costs nothing, reaches no output (pads of the outputs
are 0) and gets no gradient. Each row's final state is the state after its own last step L_b - 1; a reverse
direction first reverses each source within its own length (``backend.reverse_seq``), so its final state is
the one after reading x_0, as in PyTorch. Backward runs the segments in reverse: the gradient of a segment's
start state goes to the rows that continue from the segment before, each row's final-state gradient enters
at its own last step. A batch of one source length is one segment: one cell call per layer and direction.
GRU and RNN carry no c, so they run the whole padded window in one call instead (``whole``): padding is
computed but reaches no real output (each direction is causal in its own time order, pads come last), its
outputs are zeroed, each row's final h is read at its last step and that h's gradient added to the output
gradient there; the steps after a row's end get zero gradient, so they change nothing. LSTM needs the
segments: the gradient of its final c must enter at each row's own last step, and the cell contract takes a
final-state gradient only at the window's end.

Bridge (bidirectional only): the decoder's initial h of layer k is W [h_fwd_k; h_rev_k] + b (bridge.*), its
c likewise (bridge_c.*, LSTM); unidirectional encoders hand their final states over unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends import CellState, CellWeights

CACHE = 48      # cell workspaces kept per layer and direction, by (steps, rows)


@dataclass
class Plan:
    """How a batch of lengths runs: row order (longest first) and segments (t0, t1, rows)."""

    order: np.ndarray | None     # (B,) sorted position -> batch row; None when already sorted
    lengths: np.ndarray          # (B,) int64 lengths in sorted order
    segments: list               # [(t0, t1, n)]: steps t0..t1-1 run rows 0..n-1 (sorted order)

    @classmethod
    def of(cls, lengths) -> Plan:
        lengths = np.asarray(lengths, np.int64)
        if lengths.size and lengths.min() < 1:
            raise ValueError("every source needs at least one symbol")
        order = np.argsort(-lengths, kind="stable")
        srt = lengths[order]
        segs, t0 = [], 0
        for t1 in np.unique(srt):
            segs.append((t0, int(t1), int((srt >= t1).sum())))
            t0 = int(t1)
        same = bool((order == np.arange(lengths.size)).all())
        return cls(None if same else order, srt, segs)

    def mask(self) -> np.ndarray:
        """(S, B) real positions (sorted order, cell time order of either direction)."""
        return (np.arange(self.segments[-1][1])[:, None] < self.lengths[None, :])


@dataclass
class Encoded:
    """What the decoder needs from the encoder (and what backward needs from the encoder's forward)."""

    enc: np.ndarray          # (S, B) batch order: (S, B, D) encoder outputs (top layer), 0 on padding
    lengths: np.ndarray      # (B,) source lengths
    h0: list                 # per decoder layer: (B, H) initial h
    c0: list                 # per decoder layer: (B, H) initial c (zeros for rnn/gru)
    tape: object = None      # the forward's record for backward (sorted order)


class Encoder:
    """Parameters ``src_embed.*``, ``encoder.*``, ``bridge*`` of a Seq2SeqConfig, bound to named views."""

    def __init__(self, config, backend, dtype, params: dict, grads: dict):
        self.c, self.be, self.dtype, self.p, self.g = config, backend, np.dtype(dtype), params, grads
        self.cell = backend.cells[config.cell]
        dirs = ("", "_reverse") if config.bidirectional else ("",)
        self.names = [[CellWeights(*(f"encoder.{n}_l{k}{sfx}" for n in ("weight_ih", "weight_hh", "bias_ih",
                                                                         "bias_hh"))) for sfx in dirs]
                      for k in range(config.layers)]
        self.whole = config.cell != "lstm"   # module docstring
        self._ws: dict = {}
        self._scratch: dict = {}

    def forward(self, src, lengths=None) -> Encoded:
        """src (S, B) int32 ids, lengths (B,) (None: every row fills S) -> Encoded (batch order)."""
        c, be, p = self.c, self.be, self.p
        S, B = src.shape
        lengths = np.full(B, S, np.int64) if lengths is None else np.asarray(lengths, np.int64)
        plan = Plan.of(lengths)
        ids = np.ascontiguousarray(src if plan.order is None else src[:, plan.order])     # (S, B) sorted
        x = np.empty((S, B, c.embed), self.dtype)                                          # (S, B, E)
        be.embed_forward(x, ids, p["src_embed.weight"])
        inp, finals, runs = x, [], []
        for k, dirs in enumerate(self.names):
            outs, fin, rec = [], [], []
            for j, names in enumerate(dirs):
                y, fh, fc, segs = self._run(inp, plan, names, (k, j), reverse=j == 1)
                outs.append(y)
                fin.append((fh, fc))
                rec.append(segs)
            finals.append(fin)
            runs.append((inp, rec))
            inp = np.concatenate(outs, axis=2) if c.bidirectional else outs[0]              # (S, B, D)
        h0, c0 = self._bridge(finals)
        enc = inp
        if plan.order is not None:                                                          # back to batch order
            inv = np.argsort(plan.order)
            enc = enc[:, inv]
            h0, c0 = [h[inv] for h in h0], [a[inv] for a in c0]
        return Encoded(np.ascontiguousarray(enc), lengths, [np.ascontiguousarray(h) for h in h0],
                       [np.ascontiguousarray(a) for a in c0], (plan, ids, finals, runs))

    def backward(self, e: Encoded, denc, dh0: list, dc0: list) -> None:
        """denc (S, B, D), dh0/dc0 per decoder layer (B, H), batch order -> overwrites the encoder's gradients."""
        c, g = self.c, self.g
        plan, ids, finals, runs = e.tape
        if plan.order is not None:
            denc = denc[:, plan.order]
            dh0, dc0 = [d[plan.order] for d in dh0], [d[plan.order] for d in dc0]
        dT = self._bridge_backward(finals, dh0, dc0)
        dout = np.ascontiguousarray(denc)                                   # (S, B, D)
        H = c.hidden
        for k in reversed(range(c.layers)):
            x, rec = runs[k]
            dinp = None
            for j, names in enumerate(self.names[k]):
                dy = np.ascontiguousarray(dout[:, :, j * H:(j + 1) * H])
                dx = self._run_backward(x, plan, names, rec[j], dy, dT[k][j], reverse=j == 1)
                dinp = dx if dinp is None else dinp + dx
            dout = dinp
        self.be.embed_backward(g["src_embed.weight"], ids, np.ascontiguousarray(dout))

    def _run(self, x, plan: Plan, names: CellWeights, key, reverse: bool):
        """One layer and direction over the segments: (y (S, B, H), final h (B, H), final c (B, H), tape)."""
        S, B, I = x.shape
        H = self.c.hidden
        w = CellWeights(*(self.p[n] for n in names))
        lens = plan.lengths
        xin = x
        if reverse:
            xin = np.empty_like(x)
            self.be.reverse_seq(xin, x, lens)                   # (S, B, I) each source reversed in its length
        fh, fc = np.zeros((B, H), self.dtype), np.zeros((B, H), self.dtype)
        if self.whole:                                          # gru/rnn: one call over the padded window
            ws = self._workspace(key, S, B, I)
            self.cell.forward(ws, xin, CellState(fh, fc), w)
            fh = np.array(ws.hs[lens - 1, np.arange(B)])        # (B, H) each row's own last step
            ys = ws.hs * plan.mask()[:, :, None]                # (S, B, H) 0 on padding
            tape = [(ws, xin)]
        else:
            ys, tape = self._segments(xin, plan, w, key, fh, fc)
        if not reverse:
            return ys, fh, fc, tape
        y = np.empty_like(ys)
        self.be.reverse_seq(y, ys, lens)
        return y, fh, fc, tape

    def _segments(self, xin, plan: Plan, w: CellWeights, key, fh, fc):
        """LSTM: the rows run segment by segment; fills fh, fc (B, H) -> (ys (S, B, H) cell order, tape)."""
        S, B, I = xin.shape
        ys = np.zeros((S, B, self.c.hidden), self.dtype)        # (S, B, H) in the cell's time order
        h, cc = fh, fc                                          # the start state: zeros
        tape = []
        for i, (t0, t1, n) in enumerate(plan.segments):
            nxt = plan.segments[i + 1][2] if i + 1 < len(plan.segments) else 0
            xs = np.ascontiguousarray(xin[t0:t1, :n])             # (t1-t0, n, I)
            ws = self._workspace(key, t1 - t0, n, I)
            self.cell.forward(ws, xs, CellState(np.ascontiguousarray(h[:n]), np.ascontiguousarray(cc[:n])), w)
            ys[t0:t1, :n] = ws.hs
            h, cc = ws.hs[-1], (ws.cs[-1] if hasattr(ws, "cs") else fc)
            fh[nxt:n] = h[nxt:n]                                # rows whose last step is t1 - 1
            if hasattr(ws, "cs"):
                fc[nxt:n] = cc[nxt:n]
            tape.append((ws, xs))
        return ys, tape

    def _run_backward(self, x, plan: Plan, names: CellWeights, tape, dy, dfinal, reverse: bool):
        """dy (S, B, H) (source order), dfinal (dh, dc) (B, H) -> dx (S, B, I); overwrites this direction's
        weight gradients (summed over the segments)."""
        S, B, I = x.shape
        H = self.c.hidden
        lens = plan.lengths
        if reverse:
            dyr = np.empty_like(dy)
            self.be.reverse_seq(dyr, dy, lens)
            dy = dyr
        dfh, dfc = dfinal
        if self.whole:                                          # gru/rnn: the final h's gradient enters dhs
            ws, xin = tape[0]
            mask = plan.mask()[:, :, None]
            dys = dy * mask                                     # (S, B, H)
            dys[lens - 1, np.arange(B)] += dfh
            dx, zero = np.empty((S, B, I), self.dtype), np.zeros((B, H), self.dtype)
            d0 = CellState(np.empty((B, H), self.dtype), np.empty((B, H), self.dtype))
            self.cell.backward(ws, self._grad_buffers(names, True), dx, d0, xin, dys, CellState(zero, zero))
            dx *= mask                                          # (already 0: nothing after a row's end is used)
        else:
            dx = self._segments_backward(plan, names, tape, dy, dfh, dfc, I)
        if not reverse:
            return dx
        out = np.empty_like(dx)
        self.be.reverse_seq(out, dx, lens)
        return out

    def _segments_backward(self, plan: Plan, names: CellWeights, tape, dy, dfh, dfc, I):
        """LSTM: backward over the segments, last first -> dx (S, B, I) cell order (0 on padding)."""
        S, B, H = dy.shape
        dx = np.zeros((S, B, I), self.dtype)
        segs = plan.segments
        one = len(segs) == 1
        gbuf = self._grad_buffers(names, one)
        total = CellWeights(*(self.g[n] for n in names))
        dh, dc = np.zeros((0, H), self.dtype), np.zeros((0, H), self.dtype)   # d(start state of the next segment)
        for i in reversed(range(len(segs))):
            t0, t1, n = segs[i]
            ws, xs = tape[i]
            nxt = dh.shape[0]
            dhT, dcT = np.empty((n, H), self.dtype), np.empty((n, H), self.dtype)
            dhT[:nxt], dcT[:nxt] = dh, dc
            dhT[nxt:], dcT[nxt:] = dfh[nxt:n], dfc[nxt:n]
            dxs = np.empty_like(xs)
            d0 = CellState(np.empty((n, H), self.dtype), np.empty((n, H), self.dtype))
            self.cell.backward(ws, gbuf, dxs, d0, xs, np.ascontiguousarray(dy[t0:t1, :n]), CellState(dhT, dcT))
            dx[t0:t1, :n] = dxs
            dh, dc = d0.h, d0.c
            if not one:
                for tot, part in zip(total, gbuf, strict=True):
                    if i == len(segs) - 1:
                        tot[...] = part
                    else:
                        tot += part
        return dx

    def _bridge(self, finals):
        c, p = self.c, self.p
        h0, c0 = [], []
        for fin in finals:
            if c.bidirectional:
                h0.append(np.concatenate([fin[0][0], fin[1][0]], 1) @ p["bridge.weight"].T + p["bridge.bias"])
                if c.cell == "lstm":
                    c0.append(np.concatenate([fin[0][1], fin[1][1]], 1) @ p["bridge_c.weight"].T + p["bridge_c.bias"])
                else:
                    c0.append(np.zeros_like(fin[0][0]))
            else:
                h0.append(fin[0][0])
                c0.append(fin[0][1])
        return [a.astype(self.dtype) for a in h0], [a.astype(self.dtype) for a in c0]

    def _bridge_backward(self, finals, dh0, dc0):
        """Per layer, per direction: the gradients (dh, dc) (B, H) of the final states."""
        c, g, p = self.c, self.g, self.p
        H, out = c.hidden, []
        for n in ("bridge.weight", "bridge.bias", "bridge_c.weight", "bridge_c.bias"):
            if n in g:
                g[n][...] = 0.0                                               # one bridge for every layer
        for k, fin in enumerate(finals):
            if not c.bidirectional:
                out.append([(dh0[k], dc0[k])])
                continue
            g["bridge.weight"] += dh0[k].T @ np.concatenate([fin[0][0], fin[1][0]], 1)
            g["bridge.bias"] += dh0[k].sum(0)
            dcat = dh0[k] @ p["bridge.weight"]                                # (B, 2H)
            dcatc = np.zeros_like(dcat)
            if c.cell == "lstm":
                g["bridge_c.weight"] += dc0[k].T @ np.concatenate([fin[0][1], fin[1][1]], 1)
                g["bridge_c.bias"] += dc0[k].sum(0)
                dcatc = dc0[k] @ p["bridge_c.weight"]
            out.append([(dcat[:, :H], dcatc[:, :H]), (dcat[:, H:], dcatc[:, H:])])
        return out

    def _workspace(self, key, T, B, inputs):
        cache = self._ws.setdefault(key, {})
        ws = cache.get((T, B))
        if ws is None:
            if len(cache) >= CACHE:
                cache.pop(next(iter(cache)))
            ws = cache[(T, B)] = self.cell.alloc(T, B, inputs, self.c.hidden, self.dtype)
        return ws

    def _grad_buffers(self, names: CellWeights, direct: bool) -> CellWeights:
        if direct:
            return CellWeights(*(self.g[n] for n in names))
        buf = self._scratch.get(names)
        if buf is None:
            buf = self._scratch[names] = CellWeights(*(np.zeros_like(self.g[n]) for n in names))
        return buf
