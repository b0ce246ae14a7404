"""Scopes in which the weights do not change, so each cell packs them once per scope, not per window.

A cell's forward permutes its weights into its gate layout and packs them into the tile GEMM's
panels (``recurrent.pack_weights``) at every call, because between two training windows the
optimizer has changed them. An evaluation loop calls forward for window after window of the same
weights: for `charlm eval --file` (B 1, windows of 256, M lstm 2x256) the packing was 30 % of a
window (2.7 of 9.1 ms, 2-core AMD EPYC Zen 4). Inside ``frozen()`` (the evaluation loops enter it:
``CharLM.frozen``) a workspace that already packed in this scope reuses its packs.

The caller promises that no parameter changes inside the scope. Entering and leaving both start a
new scope, so packs made in one scope are never reused in another, and a forward outside any
scope always packs. No Numba here: ``CharLM.frozen`` enters the scope before any kernel loads.
"""

from __future__ import annotations

from contextlib import contextmanager

_depth = 0  # nesting of frozen() scopes
_scope = 0  # the current scope's number (changes on entering and on leaving)


@contextmanager
def frozen():
    """A scope in which the caller changes no weight: workspaces pack them at most once inside it."""
    global _depth, _scope
    _scope += 1
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        _scope += 1


def packed_here(holder, nc) -> bool:
    """True when ``holder`` ([recurrent.Packed, scope]: a workspace's ``pk``) holds packs for ``nc``
    unit chunks made earlier in the current frozen scope; else False, and ``holder`` is marked as
    packed now (the caller packs next) if inside a scope."""
    pk = holder[0]
    if _depth and holder[1] == _scope and pk is not None and pk.nc == nc:
        return True
    holder[1] = _scope if _depth else None
    return False
