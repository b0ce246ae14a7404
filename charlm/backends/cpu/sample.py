"""Compiled sampling: the whole generate loop (cells, head, softmax, top-k/top-p, draw) in one kernel.

One kernel per cell type (``sample_rnn``, ``sample_lstm``, ``sample_gru``) plus one per cell that
only advances the state over given ids (``consume_*``, used for the prime). Every call continues
from the state it is given, so text is produced in chunks (the CLI prints between chunks).

Weights are rearranged once by ``prepare`` (plain numpy, outside the kernels):
    table (V, G*H)   layer 0's input contribution per token: embed @ w_ih.T + b_ih (+ b_hh where it
                     simply adds: all of it for rnn/lstm, the r and z parts for gru); one-hot: w_ih.T + ...
    whhT (L, H, G*H) w_hh transposed, so a matvec is a sum of contiguous rows (vectorizes without
                     reassociation); wihT (L-1, H, G*H) for the upper layers; bi (L-1, G*H) their biases
    bhn (L, H)       gru only: b_hn, which sits inside r * (W_hn h + b_hn); zeros for other cells
    headT (H, V), head_b (V,)

State convention: ``h``/``c`` (L, B, H) is the state *before* feeding ``x`` (B,) int32, the next input
token of each row. ``generate`` feeds x, picks a token, writes it to out[:, t] and makes it the next x:
after the call x holds the last generated tokens (not yet fed). Memory: weights only (no T-sized
buffers); per call a (B, G*H) gate buffer, (B, V) logits and (V,) pick buffers. From ``GEMM_ROWS`` rows
(e.g. ``--num-samples 64``) each product of a step is one BLAS GEMM over the rows, below it a compiled
loop; the two round differently (float32), so a row's text can depend on how many rows run with it.

Picking a token from logits z (V,) with temperature T, top_k K, top_p P:
    T == 0 or K == 1: argmax (first index of the maximum; no random draw)
    p_v = exp((z_v - max z) / T) (float64, unnormalized); K in (0, V): keep the K most likely;
    P < 1: then keep the smallest most-likely-first prefix whose mass reaches P of the kept mass.
    Order is (p descending, index ascending). Draw: u = rng.random() * kept mass; the first v in
    index order whose running kept mass exceeds u.

Products of one row (B = 1: `charlm eval --file`, score, inspect) run as BLAS GEMV, not GEMM (see ``blas``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .blas import gemm
from .jit import kernel
from .mathf import sigmoid_f, tanh_f

_ZERO = np.float32(0.0)
GEMM_ROWS = 8   # from this many rows a product is one BLAS GEMM, below it the loop of _matacc


class Weights(NamedTuple):
    cell: str
    relu: bool
    table: np.ndarray    # (V, G*H)
    whhT: np.ndarray     # (L, H, G*H)
    wihT: np.ndarray     # (L-1, H, G*H)
    bi: np.ndarray       # (L-1, G*H)
    bhn: np.ndarray      # (L, H)
    headT: np.ndarray    # (H, V)
    head_b: np.ndarray   # (V,)


def prepare(cell: str, params: dict, layers: int, relu: bool = False, dtype=np.float32) -> Weights:
    """Rearrange PyTorch-named parameters into the kernels' layout (see the module docstring)."""
    dt = np.dtype(dtype)
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    get = lambda name: np.asarray(params[name])
    H = get("rnn.weight_hh_l0").shape[1]

    def folded_bias(k):  # (G*H,) float64: the part of b_hh that simply adds to b_ih
        b_hh = get(f"rnn.bias_hh_l{k}").astype(np.float64)
        if cell == "gru":
            b_hh[2 * H:] = 0.0
        return get(f"rnn.bias_ih_l{k}") + b_hh

    w_ih0T = np.ascontiguousarray(get("rnn.weight_ih_l0").T, dtype=dt)        # (I, G*H)
    table = np.empty((get("head.bias").shape[0], G * H), dt)                   # (V, G*H)
    table[:] = folded_bias(0)
    if "embed.weight" in params:   # a compiled loop, not BLAS: no thread pool to wake for a small product
        _matacc(table, np.ascontiguousarray(get("embed.weight"), dtype=dt), w_ih0T)
    else:
        table += w_ih0T                                                        # one-hot: I = V
    whhT = np.empty((layers, H, G * H), dt)
    wihT = np.empty((layers - 1, H, G * H), dt)
    bi = np.empty((layers - 1, G * H), dt)
    bhn = np.zeros((layers, H), dt)
    for k in range(layers):
        whhT[k] = get(f"rnn.weight_hh_l{k}").T
        if k > 0:
            wihT[k - 1] = get(f"rnn.weight_ih_l{k}").T
            bi[k - 1] = folded_bias(k)
        if cell == "gru":
            bhn[k] = get(f"rnn.bias_hh_l{k}")[2 * H:]
    arr = lambda a: np.ascontiguousarray(a, dtype=dt)
    return Weights(cell, bool(relu), table, whhT, wihT, bi, bhn,
                   arr(get("head.weight").T), arr(get("head.bias")))


def consume(w: Weights, h, c, ids) -> None:
    """Feed ``ids`` (P,) int32 to every row of the state h, c (L, B, H), in place."""
    ids = np.ascontiguousarray(ids, dtype=np.int32)
    if w.cell == "lstm":
        consume_lstm(w.table, w.whhT, w.wihT, w.bi, h, c, ids)
    elif w.cell == "gru":
        consume_gru(w.table, w.whhT, w.wihT, w.bi, w.bhn, h, ids)
    else:
        consume_rnn(w.table, w.whhT, w.wihT, w.bi, h, ids, w.relu)


def generate(w: Weights, h, c, x, out, temperature: float, top_k: int, top_p: float, rng) -> None:
    """Generate out.shape[1] tokens per row into out (B, n) int32, continuing from h, c and x (B,)."""
    how = (float(temperature), int(top_k), float(top_p))
    head = (w.headT, w.head_b)
    if w.cell == "lstm":
        sample_lstm(w.table, w.whhT, w.wihT, w.bi, head, h, c, x, out, how, rng)
    elif w.cell == "gru":
        sample_gru(w.table, w.whhT, w.wihT, w.bi, w.bhn, head, h, x, out, how, rng)
    else:
        sample_rnn(w.table, w.whhT, w.wihT, w.bi, head, h, x, out, how, rng, w.relu)


# ---------------------------------------------------------------- shared pieces


@kernel
def _matacc(out, inp, wT):
    """out (B, N) += inp (B, K) @ wT (K, N): four rows of wT per pass over each row of out, the rows of
    wT reused from L1 for every b."""
    B, K = inp.shape
    N = out.shape[1]
    K4 = K - K % 4
    for k in range(0, K4, 4):
        w0, w1, w2, w3 = wT[k], wT[k + 1], wT[k + 2], wT[k + 3]
        for b in range(B):
            o = out[b]
            a0, a1, a2, a3 = inp[b, k], inp[b, k + 1], inp[b, k + 2], inp[b, k + 3]
            for j in range(N):
                o[j] += (a0 * w0[j] + a1 * w1[j]) + (a2 * w2[j] + a3 * w3[j])
    for k in range(K4, K):
        wk = wT[k]
        for b in range(B):
            o = out[b]
            a = inp[b, k]
            for j in range(N):
                o[j] += a * wk[j]


@kernel
def _mm(out, inp, wT):
    """out (B, N) += inp (B, K) @ wT (K, N): BLAS (single-threaded) from GEMM_ROWS rows, else _matacc.

    Measured with bench/bench_train.py --sections sample (M lstm, 64 rows, 2-core Zen 3 AVX2 at load
    ~13): 5,300 chars/s through BLAS (88% of the 1-thread GEMM peak measured in the same run) vs
    3,950 through _matacc (separate runs); batch-1 stays on the loop (no call or packing overhead)."""
    B, K = inp.shape
    N = out.shape[1]
    if B >= GEMM_ROWS:
        gemm((False, False), (B, N, K), 1.0, (inp, 0, K), (wT, 0, N), 1.0, (out, 0, N))
    else:
        _matacc(out, inp, wT)


@kernel
def _layer_input(g, l, table, x, wihT, bi, h):
    """g (B, G*H) = layer l's input contribution: table[x] for l == 0, bi + h[l-1] @ wihT[l-1] above."""
    B, N = g.shape
    for b in range(B):
        src = table[x[b]] if l == 0 else bi[l - 1]
        for j in range(N):
            g[b, j] = src[j]
    if l > 0:
        _mm(g, h[l - 1], wihT[l - 1])


@kernel
def _better(p, a, b):
    return p[a] > p[b] or (p[a] == p[b] and a < b)


@kernel
def _sift(p, heap, i, n):
    while True:
        m = 2 * i + 1
        if m >= n:
            return
        if m + 1 < n and _better(p, heap[m + 1], heap[m]):
            m += 1
        if not _better(p, heap[m], heap[i]):
            return
        heap[i], heap[m] = heap[m], heap[i]
        i = m


@kernel
def _pop(p, heap, n):
    """Move the best of heap[:n] to heap[n-1] and restore the heap on heap[:n-1]."""
    heap[0], heap[n - 1] = heap[n - 1], heap[0]
    _sift(p, heap, np.int64(0), n - 1)  # not a literal 0: one specialization of _sift, not two


@kernel
def filter_probs(z, temperature, top_k, top_p, p, q, heap):
    """p (V,) float64 = unnormalized kept probabilities of logits z (V,) (0 where dropped); returns their sum.

    temperature > 0. q (V,) float64 and heap (V,) int32 are scratch. Popped tokens collect at the
    end of heap: the j-th most likely is heap[V-1-j].
    """
    V = z.shape[0]
    zmax = np.max(z)
    inv = 1.0 / temperature
    total = 0.0
    for v in range(V):
        p[v] = math.exp((np.float64(z[v]) - np.float64(zmax)) * inv)  # float() keeps float32 in Numba
        total += p[v]
    k = top_k if 0 < top_k < V else V
    if k == V and top_p >= 1.0:
        return total
    for v in range(V):
        heap[v] = v
    for s in range(V // 2 - 1, -1, -1):
        _sift(p, heap, s, V)
    popped = 0
    if k < V:
        total = 0.0
        for j in range(k):
            _pop(p, heap, V - j)
            total += p[heap[V - 1 - j]]
        popped = k
    keep = k
    if top_p < 1.0:
        target = top_p * total
        cum = 0.0
        j = 0
        while True:
            if j == popped:
                _pop(p, heap, V - j)
                popped += 1
            cum += p[heap[V - 1 - j]]
            j += 1
            if cum >= target or j == k:
                break
        keep = j
    q[:] = 0.0
    for j in range(keep):
        v = heap[V - 1 - j]
        q[v] = p[v]
    total = 0.0
    for v in range(V):
        p[v] = q[v]
        total += q[v]
    return total


@kernel
def pick(z, temperature, top_k, top_p, rng, p, q, heap):
    """One token id from logits z (V,) (rules in the module docstring); p, q (V,) f64, heap (V,) i32 scratch."""
    V = z.shape[0]
    if temperature == 0.0 or top_k == 1:
        return np.int32(np.argmax(z))
    total = filter_probs(z, temperature, top_k, top_p, p, q, heap)
    u = rng.random() * total
    cum = 0.0
    last = 0
    for v in range(V):
        if p[v] > 0.0:
            cum += p[v]
            last = v
            if u < cum:
                return np.int32(v)
    return np.int32(last)


@kernel
def _head_pick(head, hl, x, out, t, how, rng, scratch):
    """For each row b: logits z[b] = head_b + hl[b] @ headT, pick, write out[b, t] and x[b].
    head = (headT (H, V), head_b (V,)); how = (temperature, top_k, top_p); scratch = (z (B, V), p, q, heap)."""
    headT, head_b = head
    temperature, top_k, top_p = how
    z, p, q, heap = scratch
    B, H = hl.shape
    V = z.shape[1]
    for b in range(B):
        for v in range(V):
            z[b, v] = head_b[v]
    _mm(z, hl, headT)
    for b in range(B):
        tok = pick(z[b], temperature, top_k, top_p, rng, p, q, heap)
        out[b, t] = tok
        x[b] = tok


# ---------------------------------------------------------------- one step per cell


@kernel
def _step_lstm(table, whhT, wihT, bi, h, c, x, g):
    """Feed x (B,) through all layers: h, c (L, B, H) in place; g (B, 4H) scratch."""
    L, B, H = h.shape
    for l in range(L):
        _layer_input(g, l, table, x, wihT, bi, h)
        _mm(g, h[l], whhT[l])
        for b in range(B):
            gb = g[b]
            hb = h[l, b]
            cb = c[l, b]
            for j in range(H):
                i = sigmoid_f(gb[j])
                f = sigmoid_f(gb[H + j])
                gg = tanh_f(gb[2 * H + j])
                o = sigmoid_f(gb[3 * H + j])
                cn = f * cb[j] + i * gg
                cb[j] = cn
                hb[j] = o * tanh_f(cn)


@kernel
def _step_gru(table, whhT, wihT, bi, bhn, h, x, gi, gh):
    """Feed x (B,): h (L, B, H) in place; gi, gh (B, 3H) scratch (input and hidden contributions)."""
    L, B, H = h.shape
    for l in range(L):
        _layer_input(gi, l, table, x, wihT, bi, h)
        gh[:] = 0
        _mm(gh, h[l], whhT[l])
        bn = bhn[l]
        for b in range(B):
            a = gi[b]
            r_ = gh[b]
            hb = h[l, b]
            for j in range(H):
                r = sigmoid_f(a[j] + r_[j])
                zg = sigmoid_f(a[H + j] + r_[H + j])
                n = tanh_f(a[2 * H + j] + r * (r_[2 * H + j] + bn[j]))
                hb[j] = n + zg * (hb[j] - n)


@kernel
def _step_rnn(table, whhT, wihT, bi, h, x, g, relu):
    """Feed x (B,): h (L, B, H) in place; g (B, H) scratch; relu or tanh."""
    L, B, H = h.shape
    for l in range(L):
        _layer_input(g, l, table, x, wihT, bi, h)
        _mm(g, h[l], whhT[l])
        for b in range(B):
            gb = g[b]
            hb = h[l, b]
            if relu:
                for j in range(H):
                    hb[j] = max(gb[j], _ZERO)
            else:
                for j in range(H):
                    hb[j] = tanh_f(gb[j])


# ---------------------------------------------------------------- the kernels


@kernel
def consume_lstm(table, whhT, wihT, bi, h, c, ids):
    B = h.shape[1]
    g = np.empty((B, table.shape[1]), dtype=table.dtype)   # (B, 4H)
    x = np.empty(B, dtype=np.int32)                          # (B,)
    for t in range(ids.shape[0]):
        x[:] = ids[t]
        _step_lstm(table, whhT, wihT, bi, h, c, x, g)


@kernel
def consume_gru(table, whhT, wihT, bi, bhn, h, ids):
    B = h.shape[1]
    gi = np.empty((B, table.shape[1]), dtype=table.dtype)  # (B, 3H)
    gh = np.empty_like(gi)                                   # (B, 3H)
    x = np.empty(B, dtype=np.int32)
    for t in range(ids.shape[0]):
        x[:] = ids[t]
        _step_gru(table, whhT, wihT, bi, bhn, h, x, gi, gh)


@kernel
def consume_rnn(table, whhT, wihT, bi, h, ids, relu):
    B = h.shape[1]
    g = np.empty((B, table.shape[1]), dtype=table.dtype)   # (B, H)
    x = np.empty(B, dtype=np.int32)
    for t in range(ids.shape[0]):
        x[:] = ids[t]
        _step_rnn(table, whhT, wihT, bi, h, x, g, relu)


@kernel
def sample_lstm(table, whhT, wihT, bi, head, h, c, x, out, how, rng):
    L, B, H = h.shape
    V = head[1].shape[0]
    g = np.empty((B, table.shape[1]), dtype=table.dtype)   # (B, 4H)
    z = np.empty((B, V), dtype=table.dtype)                  # (B, V) logits
    p = np.empty(V, dtype=np.float64)
    q = np.empty(V, dtype=np.float64)
    heap = np.empty(V, dtype=np.int32)
    for t in range(out.shape[1]):
        _step_lstm(table, whhT, wihT, bi, h, c, x, g)
        _head_pick(head, h[L - 1], x, out, t, how, rng, (z, p, q, heap))


@kernel
def sample_gru(table, whhT, wihT, bi, bhn, head, h, x, out, how, rng):
    L, B, H = h.shape
    V = head[1].shape[0]
    gi = np.empty((B, table.shape[1]), dtype=table.dtype)  # (B, 3H)
    gh = np.empty_like(gi)                                   # (B, 3H)
    z = np.empty((B, V), dtype=table.dtype)
    p = np.empty(V, dtype=np.float64)
    q = np.empty(V, dtype=np.float64)
    heap = np.empty(V, dtype=np.int32)
    for t in range(out.shape[1]):
        _step_gru(table, whhT, wihT, bi, bhn, h, x, gi, gh)
        _head_pick(head, h[L - 1], x, out, t, how, rng, (z, p, q, heap))


@kernel
def sample_rnn(table, whhT, wihT, bi, head, h, x, out, how, rng, relu):
    L, B, H = h.shape
    V = head[1].shape[0]
    g = np.empty((B, table.shape[1]), dtype=table.dtype)   # (B, H)
    z = np.empty((B, V), dtype=table.dtype)
    p = np.empty(V, dtype=np.float64)
    q = np.empty(V, dtype=np.float64)
    heap = np.empty(V, dtype=np.int32)
    for t in range(out.shape[1]):
        _step_rnn(table, whhT, wihT, bi, h, x, g, relu)
        _head_pick(head, h[L - 1], x, out, t, how, rng, (z, p, q, heap))
