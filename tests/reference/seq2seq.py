"""Plain-numpy encoder-decoder, one pair at a time (written for clarity): the oracle for charlm.seq2seq.

Each pair is run on its own, unpadded: the encoder reads exactly the source's characters (the reverse
direction from the last to the first), the decoder its BOS + target, attention over the source's steps.
Parameters are charlm.seq2seq's state dict (PyTorch names). Forward only: gradients come from finite
differences of charlm's loss, which this checks first.
"""

from __future__ import annotations

import numpy as np

from .attention import attend
from .layers import log_softmax
from .model import cell_step


def _layer(cell, x, p, name, H):
    """x (T, I) -> outputs (T, H) and the final (h, c) (1, H) of one direction."""
    h = c = np.zeros((1, H))
    w = [p[f"{name[0]}.{n}{name[1]}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    out = []
    for t in range(x.shape[0]):
        h, c = cell_step(cell, x[t:t + 1], h, c, *w)
        out.append(h[0])
    return np.array(out), (h, c)


def encode(config, p, src):
    """src (S,) ids of one source -> encoder outputs (S, D), decoder initial (h, c) per layer ((1, H) each)."""
    c, H = config, config.hidden
    x = p["src_embed.weight"][src]                                  # (S, E)
    h0, c0 = [], []
    for k in range(c.layers):
        fy, (fh, fc) = _layer(c.cell, x, p, ("encoder", f"_l{k}"), H)
        if not c.bidirectional:
            x = fy
            h0.append(fh)
            c0.append(fc if c.cell == "lstm" else np.zeros((1, H)))
            continue
        ry, (rh, rc) = _layer(c.cell, x[::-1], p, ("encoder", f"_l{k}_reverse"), H)
        x = np.concatenate([fy, ry[::-1]], axis=1)                  # (S, 2H) [fwd; rev] in source order
        h0.append(np.concatenate([fh, rh], 1) @ p["bridge.weight"].T + p["bridge.bias"])
        c0.append(np.concatenate([fc, rc], 1) @ p["bridge_c.weight"].T + p["bridge_c.bias"]
                  if c.cell == "lstm" else np.zeros((1, H)))
    return x, h0, c0


def nats(config, p, src, tgt):
    """Sum of -log p over tgt + EOS (teacher forced) for one pair: src (S,), tgt (n,) ids."""
    from charlm.pairs import BOS, EOS

    c = config
    enc, hs, cs = encode(config, p, np.asarray(src))
    tin = np.concatenate([[BOS], tgt]).astype(int)
    tout = np.concatenate([tgt, [EOS]]).astype(int)
    x = p["tgt_embed.weight"][tin]                                  # (T, E)
    for k in range(c.layers):
        h, cc, out = hs[k], cs[k], []
        w = [p[f"decoder.{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        for t in range(x.shape[0]):
            h, cc = cell_step(c.cell, x[t:t + 1], h, cc, *w)
            out.append(h[0])
        x = np.array(out)                                           # (T, H)
    if c.attention != "none":
        x, _ = attend(x[:, None, :], enc[:, None, :], [enc.shape[0]], c.attention, p.get("attention.weight"),
                      p["combine.weight"], p["combine.bias"])
        x = x[:, 0]
    lp = log_softmax(x @ p["head.weight"].T + p["head.bias"])       # (T, Vt)
    return float(-lp[np.arange(tout.size), tout].sum())
