"""Beam search over any step-by-step decoder: the language model (``charlm sample --beam``) and seq2seq.

The decoder is a ``step(x (K,) int32, state) -> (logp (K, V) float64, state)`` function (log-probabilities
of the next symbol for each of K rows) plus a ``reorder(state, rows (K,)) -> state`` that gathers rows.
Every step runs all K beams as one batch. The search (deterministic: no random draw):

    start   one live hypothesis (the others are copies of it masked to -inf, so they never win).
    step    every live hypothesis k extends by every symbol v: raw score s_k + logp[k, v]; the best 2K
            candidates (ties: lower (k, v) first, a stable order) are scanned in order: a candidate that
            ends (``ends(symbols) -> bool``: EOS, or a stop string) goes to the finished list, the others
            fill the K live slots.
    stop    after ``max_len`` symbols (the live ones then finish too), or once K hypotheses have finished and
            no live one can still beat the K-th best of them: a live raw score s can end at best at
            s / max_len ** length_penalty (scores only fall), so the search is exact about that bound.
    rank    finished hypotheses by the length-normalised score  raw / len ** length_penalty
            (len counts the generated symbols, an ending EOS included; length_penalty 0 = raw log-probability,
            1 = mean log-probability per symbol; larger values favour longer outputs).

With K = 1 this is greedy decoding (argmax, first index on ties). With K >= V ** (max_len - 1) and no
ending symbol it is exhaustive: the best hypothesis is the most probable sequence of max_len symbols.
Beam output is the *most probable* continuation, so it is conservative: repetitive, common phrases, none
of the variety of sampling (use sampling with a temperature for varied text).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import UsageError


@dataclass
class Hypothesis:
    ids: list[int]          # generated symbols (an ending EOS included when ``ended``)
    logp: float             # raw sum of log-probabilities
    score: float            # logp / len ** length_penalty
    ended: bool             # finished by ``ends`` (False: stopped at max_len)


def normalised(logp: float, length: int, length_penalty: float) -> float:
    return logp / (max(length, 1) ** length_penalty)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 of logits (K, V)."""
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def check_options(beam: int, length_penalty: float) -> None:
    if not isinstance(beam, (int, np.integer)) or beam < 1:
        raise UsageError(f"--beam must be a positive integer, got {beam!r}")
    if not np.isfinite(length_penalty) or length_penalty < 0:
        raise UsageError(f"--length-penalty must be >= 0, got {length_penalty!r}")


def beam_search(step: Callable, reorder: Callable, state, x0: int, *, beam: int, max_len: int,
                length_penalty: float = 0.0, ends: Callable | None = None) -> list[Hypothesis]:
    """Finished hypotheses, best first (at most ``beam``); ``state`` already holds ``beam`` rows.

    ``x0`` is the first input symbol (BOS, or the prime's last symbol); see the module docstring.
    """
    check_options(beam, length_penalty)
    K = int(beam)
    live: list[list[int]] = [[] for _ in range(K)]
    scores = np.full(K, -np.inf)                 # (K,) raw log-probabilities of the live hypotheses
    scores[0] = 0.0
    x = np.full(K, x0, dtype=np.int32)           # (K,)
    finished: list[Hypothesis] = []
    for t in range(max_len):
        logp, state = step(x, state)             # (K, V)
        V = logp.shape[1]
        cand = (scores[:, None] + logp).reshape(-1)                       # (K*V,)
        n = min(2 * K, cand.size)
        order = np.lexsort((np.arange(cand.size), -cand))[:n]             # best first, stable
        rows, syms, new = [], [], []
        last = t == max_len - 1
        for i in order:
            s = cand[i]
            if not np.isfinite(s):
                break
            k, v = divmod(int(i), V)
            ids = live[k] + [v]
            if ends is not None and ends(ids):
                finished.append(Hypothesis(ids, float(s), normalised(float(s), len(ids), length_penalty), True))
            elif last:
                finished.append(Hypothesis(ids, float(s), normalised(float(s), len(ids), length_penalty), False))
            else:
                rows.append(k)
                syms.append(v)
                new.append(ids)
            if len(new) == K or (last and len(finished) >= K):
                break
        finished.sort(key=lambda h: -h.score)
        del finished[K:]
        if not new:
            break
        if len(finished) >= K:
            best_live = max(cand[r * V + v] for r, v in zip(rows, syms, strict=True))
            if finished[-1].score >= normalised(float(best_live), max_len, length_penalty):
                break
        n_live = len(new)
        while len(new) < K:                      # fewer candidates than beams: pad with dead copies
            rows.append(rows[0])
            syms.append(syms[0])
            new.append(list(new[0]))
        scores = np.array([cand[r * V + s] for r, s in zip(rows, syms, strict=True)], dtype=np.float64)
        scores[n_live:] = -np.inf
        live = new
        state = reorder(state, np.asarray(rows, dtype=np.int64))
        x = np.asarray(syms, dtype=np.int32)
    finished.sort(key=lambda h: -h.score)
    return finished[:K]


# ---------------------------------------------------------------- the language model
class LMStepper:
    """The one place beam search calls a CharLM: ``step`` and ``reorder`` over its (h, c) state."""

    def __init__(self, model):
        self.model = model                       # a charlm.model.CharLM

    def start(self, prime_ids: np.ndarray, rows: int):
        """State after feeding ``prime_ids`` (P,) from zero, repeated over ``rows``: (h, c) (L, rows, H)."""
        state = self.model.init_state(1)
        if prime_ids.size:
            x = np.ascontiguousarray(prime_ids.reshape(-1, 1).astype(np.int32))   # (P, 1)
            _, state = self.model.logits(x, state)
        be = self.model.backend
        return tuple(be.to_device(np.ascontiguousarray(np.repeat(be.to_host(s), rows, axis=1))) for s in state)

    def step(self, x: np.ndarray, state):
        logits, state = self.model.logits(np.ascontiguousarray(x.reshape(1, -1)), state)   # (1, K, V)
        return log_softmax(logits[0]), state

    def reorder(self, state, rows: np.ndarray):
        be = self.model.backend
        return tuple(be.to_device(np.ascontiguousarray(be.to_host(s)[:, rows])) for s in state)


def lm_beam(m, prime: str = "", *, beam: int = 4, length: int = 100, length_penalty: float = 0.0,
            stop=(), unknown: str = "error", notice=None) -> list[Hypothesis]:
    """Beam search continuations of ``prime`` under a loaded ``charlm.generate.Model`` ``m``, best first.

    ``length`` symbols at most; a hypothesis ends early at the first stop string in its generated text.
    Hypothesis.ids are the generated symbols (decode with ``m.tokenizer.decode``).
    """
    check_options(beam, length_penalty)
    if not isinstance(length, (int, np.integer)) or length < 1:
        raise UsageError(f"--length must be a positive integer, got {length!r}")
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    if any(not isinstance(s, str) or not s for s in stop):
        raise UsageError("--stop needs a non-empty string")
    ids = m.encode_prime(prime, unknown, notice)
    stepper = LMStepper(m.model)
    state = stepper.start(ids[:-1], beam)
    x0 = int(ids[-1]) if ids.size else m.start_id
    ends = None
    if stop:
        decode = m.tokenizer.decode

        def ends(hyp_ids):
            text = decode(np.asarray(hyp_ids[-64:], dtype=np.int32))
            return any(s in text for s in stop)

    return beam_search(stepper.step, stepper.reorder, state, x0, beam=beam, max_len=length,
                       length_penalty=length_penalty, ends=ends)
