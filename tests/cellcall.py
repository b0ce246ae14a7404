"""Call a cell module (either backend) with the tests' dict of named arrays.

``p`` holds x, h0, c0 (optional), w_ih, w_hh, b_ih, b_hh; ``g`` holds the outputs dw_ih, dw_hh,
db_ih, db_hh, dx, dh0 and optionally dc0, as the names of the gradient each one receives.
"""

from __future__ import annotations

from charlm.backends import CellState, CellWeights


def weights(p, prefix=""):
    return CellWeights(p[prefix + "w_ih"], p[prefix + "w_hh"], p[prefix + "b_ih"], p[prefix + "b_hh"])


def forward(mod, ws, p):
    mod.forward(ws, p["x"], CellState(p["h0"], p.get("c0")), weights(p))


def backward(mod, ws, p, g, dhs, dhT, dcT=None):
    mod.backward(ws, weights(g, "d"), g["dx"], CellState(g["dh0"], g.get("dc0")), p["x"], dhs, CellState(dhT, dcT))
