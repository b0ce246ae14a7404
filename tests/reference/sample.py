"""Plain-numpy sampler: the oracle for charlm.backends.cpu.sample, written for clarity.

Rules (the same as the kernel's; the arithmetic order matches it so seeded draws agree):
    temperature == 0 or top_k == 1  -> argmax (first index of the maximum), no random draw
    p_v = exp((z_v - max z) / T) in float64 (unnormalized)
    top_k in (0, V): keep the k most likely, order (p descending, index ascending)
    top_p < 1: of those, keep the smallest most-likely-first prefix whose mass reaches top_p of the kept mass
    draw: u = rng.random() * kept mass; the first index (ascending) whose running kept mass exceeds u
Generation: the prime's ids but the last are fed first; then per step feed x (the last prime id, or the
start id), compute logits, pick for every row b = 0..B-1 in turn, feed the picks.
"""

from __future__ import annotations

import math

import numpy as np

from reference.model import cell_step


def filter_probs(z, temperature, top_k=0, top_p=1.0):
    """Kept unnormalized probabilities (V,) float64 (0 where dropped) and their sum."""
    z = np.asarray(z, dtype=np.float64)
    V = z.size
    zmax = float(z.max())
    p = np.array([math.exp((float(v) - zmax) * (1.0 / temperature)) for v in z])
    k = top_k if 0 < top_k < V else V
    if k == V and top_p >= 1.0:
        return p, _seqsum(p)
    order = sorted(range(V), key=lambda v: (-p[v], v))   # most likely first, ties by lower index
    total = _seqsum(p[order[:k]]) if k < V else _seqsum(p)
    keep = k
    if top_p < 1.0:
        cum, keep = 0.0, k
        for j in range(k):
            cum += p[order[j]]
            if cum >= top_p * total:
                keep = j + 1
                break
    out = np.zeros(V)
    out[order[:keep]] = p[order[:keep]]
    return out, _seqsum(out)


def _seqsum(a):
    s = 0.0
    for v in a:
        s += float(v)
    return s


def pick(z, temperature, top_k, top_p, rng):
    """One id from logits z (V,)."""
    if temperature == 0.0 or top_k == 1:
        return int(np.argmax(z))
    p, total = filter_probs(z, temperature, top_k, top_p)
    u = rng.random() * total
    cum, last = 0.0, 0
    for v in range(p.size):
        if p[v] > 0.0:
            cum += p[v]
            last = v
            if u < cum:
                return v
    return last


def _step(config, params, ids, h, c):
    """Feed ids (B,) through the stack; h, c (L, B, H) -> new (h, c); returns the top layer's h."""
    V = config.vocab_size
    inp = params["embed.weight"][ids] if config.embed > 0 else np.eye(V, dtype=h.dtype)[ids]
    relu = config.nonlinearity == "relu"
    h, c = h.copy(), c.copy()
    for k in range(config.layers):
        w = [params[f"rnn.{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h[k], c[k] = cell_step(config.cell, inp, h[k], c[k], *w, relu=relu)
        inp = h[k]
    return h, c


def sample(config, params, prime_ids, start_id, length, temperature, top_k, top_p, rng, num_samples=1,
           dtype=np.float64):
    """Generated ids (B, length) for B = num_samples rows that share the prime."""
    params = {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
    L, H, B = config.layers, config.hidden, num_samples
    h = np.zeros((L, B, H), dtype)
    c = np.zeros((L, B, H), dtype)
    prime_ids = list(prime_ids)
    for i in prime_ids[:-1]:
        h, c = _step(config, params, np.full(B, i), h, c)
    x = np.full(B, prime_ids[-1] if prime_ids else start_id)
    out = np.zeros((B, length), dtype=np.int64)
    for t in range(length):
        h, c = _step(config, params, x, h, c)
        logits = h[-1] @ params["head.weight"].T + params["head.bias"]   # (B, V)
        for b in range(B):
            out[b, t] = pick(logits[b], temperature, top_k, top_p, rng)
        x = out[:, t].copy()
    return out
