"""What a model sees in a text: per-character surprisal, top-k predictions, every unit's state,
gate saturation and the units that track simple text features (``charlm inspect``).

The page (``charlm.report_html``) and ``--json`` carry the same data, built here by ``build``.

Conventions
    Position p of the text is coloured by what the model did AT p: its surprisal is
    -log2 P(text[p] | text[:p]) (the prediction made before reading p), its activation is the state
    right after reading text[p]. As in ``charlm score``, a newline is fed first as context when the
    vocabulary has one (``context``), so every position is predicted; otherwise position 0 is not
    (surprisal null). State starts at zero and is carried through the whole text (as ``charlm eval``).

Computation (``forward_states``): the compiled cell kernels run over windows of ``WINDOW`` steps
(batch 1, state carried); per window the embedding, the head's logits, the log-softmax, the top-k
and the LSTM/GRU gate activations (recomputed from the kernel's states: one GEMM per window, no
Python per step) are NumPy array operations. Correlations and gate saturation are accumulated per
window, so memory holds only the states kept for the page: the first ``span`` positions, where
``span = min(N, ACT_VALUES // series)`` and ``series = layers * hidden * (2 for lstm: h and c, else 1)``.

Text features (per position, the state of the text after reading it):
    in_quotes      1 inside a double-quoted string ("..." toggles; may span lines)
    bracket_depth  nesting depth of ()[]{} (never below 0)
    in_brackets    1 when bracket_depth > 0
    line_position  characters since the last newline (0 on the newline itself)
    indentation    leading spaces/tabs of the current line read so far (0 on the newline)
    after_newline  1 on a newline (the state that starts a line)
A unit's correlation with a feature is Pearson's r over all N positions (0 when either is constant).

JSON schema ("schema": "charlm-inspect/1"); N positions, K top-k, L layers, H hidden, S = span:
    schema, path            the format tag; the model file
    summary, summary_text   ``charlm info``'s summary (``charlm.inspect.summarize``) and its text
    metrics                 the records of RUN_DIR/metrics.jsonl ([] when there is none)
    config                  the model config (cell, layers, hidden, ...)
    vocab                   display string of every id
    context                 id fed before position 0, or null
    tokens                  N display strings (a byte-level continuation byte shows "")
    ids                     N ids
    surprisal_bits          N floats (null where not predicted)
    bpc                     mean surprisal over the predicted positions; predicted: their count
    topk                    {"k": K, "ids": N x K, "probs": N x K} (rows of an unpredicted position: [])
    features                {"names": F names, "values": {name: N floats}}
    activations             {"span": S, "states": ["h"] or ["h", "c"],
                             "layers": [{"layer": k, "h": S x H, "c": S x H (lstm only)}]}
    correlations            {"features": F names, "layers": [{"layer": k, "h": H x F, "c": H x F}]}
    ranked                  [{"layer", "state", "unit", "feature", "r"}], |r| descending, one row per unit
    gates                   [{"layer": k, "names": [...], "low": G x H, "high": G x H}]: fraction of
                            positions with the gate < 0.1 / > 0.9 (sigmoid gates: lstm i f o, gru r z)
"""

from __future__ import annotations

import math

import numpy as np

from . import rundir
from .config import LN2
from .errors import UsageError

SCHEMA = "charlm-inspect/1"
WINDOW = 1024
TOP_K = 5
MAX_CHARS_DEFAULT = 10_000      # characters inspected when --max-chars is not given
MAX_CHARS_LIMIT = 200_000       # hard bound: beyond it the page would be tens of MB
ACT_VALUES = 3_000_000          # activation values kept for the page (one byte each there)
RANKED = 30
LOW, HIGH = 0.1, 0.9
FEATURES = ("in_quotes", "bracket_depth", "in_brackets", "line_position", "indentation", "after_newline")
GATE_NAMES = {"lstm": ("i", "f", "o"), "gru": ("r", "z")}
_OPEN, _CLOSE = set("([{"), set(")]}")


# ---------------------------------------------------------------- text features


def text_features(tokens: list[str]) -> np.ndarray:
    """(N, F) float64 features of each position (see the module docstring), in FEATURES order."""
    out = np.zeros((len(tokens), len(FEATURES)))
    quote = depth = col = indent = 0
    leading = True
    for p, tok in enumerate(tokens):
        for ch in tok:
            if ch == "\n":
                col, indent, leading = 0, 0, True
                continue
            col += 1
            if leading and ch in " \t":
                indent += 1
            else:
                leading = False
            if ch == '"':
                quote ^= 1
            elif ch in _OPEN:
                depth += 1
            elif ch in _CLOSE:
                depth = max(0, depth - 1)
        out[p] = (quote, depth, depth > 0, col, indent, tok.endswith("\n"))
    return out


# ---------------------------------------------------------------- forward with states


def _layer_weights(params: dict, k: int):
    return (params[f"rnn.weight_ih_l{k}"], params[f"rnn.weight_hh_l{k}"],
            params[f"rnn.bias_ih_l{k}"], params[f"rnn.bias_hh_l{k}"])


def _alloc(cell, name: str, T: int, I: int, H: int, dtype, relu: bool):
    """A batch-1 workspace; the cell contract with CellState/CellWeights keeps relu in the rnn's ws."""
    from . import backends

    if name == "rnn" and hasattr(backends, "CellWeights"):
        return cell.alloc(T, 1, I, H, dtype, relu=relu)
    return cell.alloc(T, 1, I, H, dtype)


def _cell_forward(cell, ws, x, h0, c0, weights, relu: bool) -> None:
    """The cell kernel's forward over one window, under either version of the cell contract."""
    from . import backends

    if hasattr(backends, "CellWeights"):
        cell.forward(ws, x, backends.CellState(h0, c0), backends.CellWeights(*weights))
    else:
        cell.forward(ws, x, h0, c0, *weights, relu=relu)


def _sigmoid(z):
    return 0.5 * np.tanh(0.5 * z) + 0.5


def _gates(cell: str, x, hprev, weights):
    """(T, G', H) sigmoid gate activations of a window, recomputed from its inputs and states.

    x (T, I) the layer's input, hprev (T, H) the state before each step; G' = GATE_NAMES[cell]."""
    w_ih, w_hh, b_ih, b_hh = weights
    H = hprev.shape[1]
    zi = x @ w_ih.T + b_ih                      # (T, G*H)
    zh = hprev @ w_hh.T + b_hh                  # (T, G*H)
    if cell == "lstm":                          # i, f, g, o blocks
        z = zi + zh
        return _sigmoid(np.stack([z[:, :H], z[:, H:2 * H], z[:, 3 * H:]], axis=1))
    z = zi[:, :2 * H] + zh[:, :2 * H]           # gru: r, z blocks
    return _sigmoid(z.reshape(-1, 2, H))


def forward_states(model, seq: np.ndarray, *, window: int = WINDOW, gates: bool = True):
    """Run a CharLM over ids ``seq`` (M,) from zero state, batch 1, by the compiled cell kernels.

    Yields per window of rows [s, e): (s, logits (T, V) float32, layers) where layers[k] is a dict
    with "h" (T, H) and, for lstm, "c" (T, H): the states after each row (copies), and "gates"
    (T, G', H) when ``gates`` and the cell has them. Only the kernels' forward outputs (ws.hs,
    ws.cs) are read; nothing in the kernels is changed.
    """
    c, p = model.config, model.params
    cell, dt = model.cell, model.dtype
    relu = c.nonlinearity == "relu"
    H, L = c.hidden, c.layers
    sizes = [c.input_size] + [H] * (L - 1)
    h0 = np.zeros((L, 1, H), dt)
    c0 = np.zeros((L, 1, H), dt)
    wss: dict[int, list] = {}
    eye = None if c.embed > 0 else np.eye(c.vocab_size, dtype=dt)
    for s in range(0, seq.size, window):
        ids = seq[s:s + window]
        T = ids.size
        if T not in wss:
            wss[T] = [_alloc(cell, c.cell, T, sizes[k], H, dt, relu) for k in range(L)]
        x = p["embed.weight"][ids] if c.embed > 0 else eye[ids]          # (T, I0)
        layers = []
        for k in range(L):
            ws = wss[T][k]
            weights = _layer_weights(p, k)
            xin = np.ascontiguousarray(x.reshape(T, 1, -1), dtype=dt)    # (T, 1, I)
            _cell_forward(cell, ws, xin, h0[k], c0[k], weights, relu)
            hs = np.array(ws.hs[:, 0], copy=True)                        # (T, H)
            out = {"h": hs}
            if c.cell == "lstm":
                out["c"] = np.array(ws.cs[:, 0], copy=True)              # (T, H)
            if gates and c.cell in GATE_NAMES:
                hprev = np.concatenate([h0[k], hs[:-1]])                 # (T, H)
                out["gates"] = _gates(c.cell, x, hprev, weights)
            h0[k, 0] = hs[-1]
            if "c" in out:
                c0[k, 0] = out["c"][-1]
            layers.append(out)
            x = hs
        logits = x @ p["head.weight"].T + p["head.bias"]                 # (T, V)
        yield s, logits, layers


# ---------------------------------------------------------------- the report's data


class _Stats:
    """Running sums for Pearson's r of S series against F features."""

    def __init__(self, S: int, F: int):
        self.n = 0
        self.sx = np.zeros(S)
        self.sxx = np.zeros(S)
        self.sxf = np.zeros((S, F))

    def add(self, x, f):          # x (T, S), f (T, F)
        x = x.astype(np.float64)
        self.n += x.shape[0]
        self.sx += x.sum(0)
        self.sxx += (x * x).sum(0)
        self.sxf += x.T @ f

    def r(self, sf, sff):          # (S, F)
        n = self.n
        cov = n * self.sxf - np.outer(self.sx, sf)
        vx = np.maximum(n * self.sxx - self.sx ** 2, 0.0)
        vf = np.maximum(n * sff - sf ** 2, 0.0)
        den = np.sqrt(np.outer(vx, vf))
        ok = den > 1e-9 * np.maximum(1.0, np.outer(np.abs(vx), np.abs(vf))) ** 0.5
        return np.where(ok, cov / np.where(ok, den, 1.0), 0.0)


def display_tokens(tokenizer, ids) -> list[str]:
    """The text each id shows: its character; at byte level the whole character on its last byte."""
    if tokenizer.level == "char":
        table = ["\ufffd" if s is None else s for s in tokenizer.vocab]
        return [table[i] for i in ids]
    dec = tokenizer.stream_decoder()
    return [dec.decode(np.array([i], np.int32)) for i in ids]


def vocab_strings(tokenizer) -> list[str]:
    if tokenizer.level == "char":
        return ["\ufffd" if s is None else s for s in tokenizer.vocab]
    return ["\ufffd" if s is None else (chr(s) if s < 128 else f"0x{s:02x}") for s in tokenizer.vocab]


def bound_text(text: str, max_chars: int | None, notice=None) -> str:
    """The part of ``text`` the report covers: at most ``max_chars`` (default MAX_CHARS_DEFAULT)."""
    if max_chars is not None and not 1 <= max_chars <= MAX_CHARS_LIMIT:
        raise UsageError(f"--max-chars must be between 1 and {MAX_CHARS_LIMIT:,}, got {max_chars}: "
                         "a report beyond that would be tens of MB; inspect a part of the text")
    limit = MAX_CHARS_DEFAULT if max_chars is None else max_chars
    if not text:
        raise UsageError("the text is empty: nothing to inspect; pass a FILE with some text")
    if len(text) > limit:
        if notice is not None:
            how = "pass --max-chars N to change it" if max_chars is None else "--max-chars"
            notice(f"the report covers the first {limit:,} of {len(text):,} characters ({how}, "
                   f"at most {MAX_CHARS_LIMIT:,})")
        text = text[:limit]
    return text


def build(m, ids, *, summary: dict | None = None, summary_text: str = "", metrics=None,
          path: str = "", top_k: int = TOP_K, act_values: int = ACT_VALUES) -> dict:
    """The report's data (the JSON schema above, activations as float32 arrays) for ids (N,)."""
    ids = np.asarray(ids, dtype=np.int32)
    N = ids.size
    if N == 0:
        raise UsageError("the text is empty after encoding: nothing to inspect")
    if N > MAX_CHARS_LIMIT * 4:
        raise UsageError(f"{N:,} symbols is too many for a report (at most {MAX_CHARS_LIMIT:,} characters)")
    if m.model.device != "cpu":
        raise UsageError("inspect runs on the CPU: load the model with device='cpu'")
    c = m.config
    L, H, V = c.layers, c.hidden, c.vocab_size
    k_top = max(1, min(top_k, V))
    context = m._id_of("\n")
    off = 1 if context is not None else 0
    seq = np.concatenate([np.array([context], np.int32), ids]) if off else ids   # (M,)
    tokens = display_tokens(m.tokenizer, ids)
    feats = text_features(tokens)                                            # (N, F)
    F = feats.shape[1]
    states = ["h", "c"] if c.cell == "lstm" else ["h"]
    span = int(min(N, max(1, act_values // (L * H * len(states)))))
    kept = [{s: np.zeros((span, H), np.float32) for s in states} for _ in range(L)]
    stats = [{s: _Stats(H, F) for s in states} for _ in range(L)]
    gnames = GATE_NAMES.get(c.cell, ())
    low = np.zeros((L, len(gnames), H))
    high = np.zeros((L, len(gnames), H))
    surprisal = np.full(N, np.nan)
    top_ids = np.zeros((N, k_top), np.int32)
    top_p = np.zeros((N, k_top))
    for s, logits, layers in forward_states(m.model, seq, gates=bool(gnames)):
        T = logits.shape[0]
        # rows r in [s, s+T) predict seq[r+1], which is position r + 1 - off
        z = logits.astype(np.float64)
        z -= z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))                # (T, V)
        rows = np.arange(s, s + T)
        pred = rows + 1 < seq.size
        pos = rows[pred] + 1 - off
        surprisal[pos] = -logp[pred, seq[rows[pred] + 1]] / LN2
        part = np.argpartition(-logp[pred], k_top - 1, axis=1)[:, :k_top] if k_top < V else \
            np.tile(np.arange(V), (int(pred.sum()), 1))
        lp = np.take_along_axis(logp[pred], part, 1)
        order = np.argsort(-lp, axis=1, kind="stable")
        top_ids[pos] = np.take_along_axis(part, order, 1)
        top_p[pos] = np.exp(np.take_along_axis(lp, order, 1))
        # rows r >= off hold the state after position r - off
        a = max(off - s, 0)
        sp = rows[a:] - off                                                  # positions of these rows
        if sp.size == 0:
            continue
        f = feats[sp]
        for k, out in enumerate(layers):
            for st in states:
                x = out[st][a:]
                stats[k][st].add(x, f)
                keep = sp < span
                kept[k][st][sp[keep]] = x[keep]
            if gnames:
                g = out["gates"][a:]                                        # (T', G', H)
                low[k] += (g < LOW).sum(0)
                high[k] += (g > HIGH).sum(0)
    sf, sff = feats.sum(0), (feats * feats).sum(0)
    corr = [{st: stats[k][st].r(sf, sff) for st in states} for k in range(L)]
    predicted = int(np.isfinite(surprisal).sum())
    bpc = float(np.nanmean(surprisal)) if predicted else None
    ranked = rank_units(corr)
    return {
        "schema": SCHEMA, "path": path, "summary": summary or {}, "summary_text": summary_text,
        "metrics": list(metrics or []),
        "config": {k: getattr(c, k) for k in ("cell", "layers", "hidden", "embed", "vocab_size", "nonlinearity")},
        "vocab": vocab_strings(m.tokenizer), "context": context,
        "tokens": tokens, "ids": ids, "surprisal_bits": surprisal, "bpc": bpc, "predicted": predicted,
        "topk": {"k": k_top, "ids": top_ids, "probs": top_p},
        "features": {"names": list(FEATURES), "values": feats},
        "activations": {"span": span, "states": states,
                        "layers": [{"layer": k, **kept[k]} for k in range(L)]},
        "correlations": {"features": list(FEATURES), "layers": [{"layer": k, **corr[k]} for k in range(L)]},
        "ranked": ranked,
        "gates": [{"layer": k, "names": list(gnames), "low": low[k] / N, "high": high[k] / N}
                  for k in range(L)] if gnames else [],
    }


def rank_units(corr: list[dict], limit: int = RANKED) -> list[dict]:
    """The units most correlated with a feature: each unit once (its best feature), |r| descending."""
    rows = []
    for k, by_state in enumerate(corr):
        for st, r in by_state.items():                       # r (H, F)
            best = np.abs(r).argmax(1)
            for u in range(r.shape[0]):
                rows.append((abs(r[u, best[u]]), k, st, u, FEATURES[best[u]], float(r[u, best[u]])))
    rows.sort(key=lambda t: -t[0])
    return [{"layer": k, "state": st, "unit": u, "feature": f, "r": r}
            for a, k, st, u, f, r in rows[:limit] if a > 0]


def to_jsonable(data: dict) -> dict:
    """``build``'s result with arrays as lists (NaN as null): what ``--json`` writes."""
    def conv(v):
        if isinstance(v, np.ndarray):
            if v.dtype.kind == "f":
                out = v.astype(np.float64).tolist()
                return _nan_to_none(out) if np.isnan(v).any() else out
            return v.tolist()
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, list):
            return [conv(x) for x in v]
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    out = conv(data)
    feats = data["features"]["values"]
    out["features"]["values"] = {name: feats[:, j].tolist() for j, name in enumerate(FEATURES)}
    unpred = ~np.isfinite(data["surprisal_bits"])
    if unpred.any():
        for p in np.flatnonzero(unpred):
            out["topk"]["ids"][p] = []
            out["topk"]["probs"][p] = []
    return out


def _nan_to_none(x):
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x


def inspect_model(path, text: str | None = None, *, max_chars: int | None = None, unknown: str = "error",
                  top_k: int = TOP_K, notice=None) -> dict:
    """``build`` for a RUN_DIR or model file and a text (None: the run's validation split)."""
    from .inspect import format_summary, read_metrics, run_dir_of, summarize
    from .loading import load
    from .runsplit import split_ids

    m = load(path)
    if text is None:
        run_dir = run_dir_of(path)
        if run_dir is None or not (run_dir / rundir.CONFIG).is_file():
            raise UsageError(f"no FILE given, and {path} is not a run directory with a config.json to rebuild "
                             "its validation split from: pass a FILE ('-' = stdin)")
        ids = split_ids(path, "val", m.tokenizer, notice)
        text = m.tokenizer.decode(ids)
    text = bound_text(text, max_chars, notice)
    ids, _ = m.encode_text(text, unknown, notice)
    if ids.size == 0:
        raise UsageError("no character of the text is in the model's vocabulary: nothing to inspect")
    summary = summarize(path)
    run_dir = run_dir_of(path)
    metrics = (read_metrics(run_dir) if run_dir is not None else None) or []
    return build(m, ids, summary=summary, summary_text=format_summary(summary), metrics=metrics,
                 path=summary["path"], top_k=top_k)
