"""Backend registry: ``get("cpu")`` or ``get("cuda")`` returns a module-like
object that offers the same function names on every device.

The contract (every backend, name for name; arrays are the backend's own:
NumPy on the CPU, device arrays on CUDA; all float arrays C-contiguous and of
one dtype, float32 in production, float64 in gradient checks; ids int32):

Cells: ``backend.cells[name]`` for name in ``rnn``, ``lstm``, ``gru`` is a module with
    G                        gates per cell (1, 4, 3)
    alloc(T, B, I, H, dtype) -> ws        workspace (NamedTuple of arrays), reused across windows;
                                          rnn only: alloc(..., relu=False) picks its activation.
                                          ws.hs is (T, B, H): the layer's outputs; ws.cs (T, B, H) for lstm
    forward(ws, x, state0, w)
        x (T, B, I); state0: CellState(h (B, H), c (B, H)) (c is ignored by rnn/gru and may be None);
        w: CellWeights(w_ih (G*H, I), w_hh (G*H, H), b_ih (G*H,), b_hh (G*H,)) in PyTorch's layout.
        Fills ws.hs (and ws.cs) and whatever backward needs, including its own copy of state0 and of
        the weights. The final state is ws.hs[T-1] (and ws.cs[T-1]).
    backward(ws, grads, dx, dstate0, x, dhs, dstateT)
        after forward on the same ws. Outputs first, all overwritten (never accumulated):
        grads: CellWeights of dw_ih, dw_hh, db_ih, db_hh; dx (T, B, I); dstate0: CellState(dh0, dc0)
        (B, H) (rnn/gru zero-fill dc0 when it is not None). Inputs: x (T, B, I) the forward's input,
        dhs (T, B, H) dLoss/dhs (read only), dstateT: CellState(dhT, dcT) (B, H) dLoss/d(final state)
        (zeros when the window's end state is not used; dcT ignored by rnn/gru).
Layers around the cells:
    embed_forward(out (T, B, E), ids (T, B), weight (V, E))
    embed_backward(dweight (V, E), ids (T, B), dout (T, B, E))      overwrites dweight
    onehot(out (T, B, V), ids (T, B))
    linear_forward(out (N, O), x (N, I), w (O, I), b (O,))
    linear_backward(dx (N, I) | None, dw (O, I), db (O,), dout (N, O), x (N, I), w (O, I))   overwrites
    xent(logits (N, V), targets (N,), dlogits (N, V) | None, scale) -> float   sum of -log p[target];
        when dlogits is given writes scale * (softmax - onehot(target)); dlogits is a buffer of its own
Sequence plumbing (variable lengths (B,) int64, pooling, concatenation, activations; see
``cpu/seq.py`` for the definitions): reverse_seq, concat_last, split_last, pool_last(_backward),
pool_mean(_backward), take_rows, put_rows, activation(_backward), add(out, a, b).
Optimizer and gradient utilities (flat 1-D parameter/gradient/state buffers, updated in place):
    grad_sumsq(g) -> float;  scale_(g, s);  clip_value_(g, c);  all_finite(g) -> bool
    adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step)
    sgd_step(p, g, buf, lr, momentum, weight_decay, step)
    rmsprop_step(p, g, sq, buf, lr, alpha, eps, momentum, weight_decay, step)
Transfers and helpers: to_device(np_array), to_host(array), zeros(shape, dtype), empty(shape, dtype),
    mul(out, a, b) (elementwise, for dropout).
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from ..errors import UsageError


class CellWeights(NamedTuple):
    """One recurrent layer's weights (or their gradients), PyTorch's names and layout."""

    w_ih: object  # (G*H, I)
    w_hh: object  # (G*H, H)
    b_ih: object  # (G*H,)
    b_hh: object  # (G*H,)


class CellState(NamedTuple):
    """A recurrent layer's state (or its gradient): h, and LSTM's cell state c (None or ignored otherwise)."""

    h: object  # (B, H)
    c: object = None  # (B, H)

_MODULES = {"cpu": "charlm.backends.cpu", "cuda": "charlm.backends.cuda", "numpy": "charlm.backends.numpy"}

CELL_NAMES = ("rnn", "lstm", "gru")
# the contract's functions -> the submodule of every backend that defines them
EXPORTS = {
    "embed_forward": "embed", "embed_backward": "embed", "onehot": "embed",
    "linear_forward": "linear", "linear_backward": "linear",
    "xent": "loss",
    "reverse_seq": "seq", "concat_last": "seq", "split_last": "seq", "pool_last": "seq",
    "pool_last_backward": "seq", "pool_mean": "seq", "pool_mean_backward": "seq",
    "take_rows": "seq", "put_rows": "seq", "activation": "seq", "activation_backward": "seq", "add": "seq",
    "grad_sumsq": "optim", "scale_": "optim", "clip_value_": "optim", "all_finite": "optim",
    "adam_step": "optim", "sgd_step": "optim", "rmsprop_step": "optim",
}


class LazyCells(dict):
    """``backend.cells[name]``: a backend's cell module, imported on first use."""

    def __init__(self, package: str):
        super().__init__()
        self.package = package

    def __missing__(self, key):
        if key not in CELL_NAMES:
            raise KeyError(key)
        mod = importlib.import_module(f"{self.package}.{key}")
        self[key] = mod
        return mod


def lazy_exports(package: str, namespace: dict):
    """A module ``__getattr__`` that imports a backend's EXPORTS on first use (compiling nothing else)."""

    def __getattr__(attr):
        if attr in EXPORTS:
            value = getattr(importlib.import_module(f"{package}.{EXPORTS[attr]}"), attr)
            namespace[attr] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {attr!r}")

    return __getattr__


def get(name: str):
    """Return the backend module for ``name`` (``cpu`` or ``cuda``)."""
    if name not in _MODULES:
        raise UsageError(f"unknown device {name!r}: choose cpu, cuda or auto")
    return importlib.import_module(_MODULES[name])


def resolve_device(device: str, notice=None) -> str:
    """Map ``auto`` to ``cuda`` when a GPU is usable, else ``cpu`` (with a notice)."""
    if device == "cpu":
        return "cpu"
    ok, why = _cuda_usable()
    if device == "cuda":
        if not ok:
            raise UsageError(f"--device cuda: no usable GPU ({why}). Use --device cpu, or --device auto.")
        return "cuda"
    if device == "auto":
        if ok:
            return "cuda"
        if notice:
            notice(f"no usable GPU ({why}); using the CPU")
        return "cpu"
    raise UsageError(f"unknown device {device!r}: choose cpu, cuda or auto")


def _cuda_usable() -> tuple[bool, str]:
    try:
        from numba import cuda
    except Exception as e:  # numba-cuda missing or broken
        return False, f"numba-cuda not importable: {e}"
    try:
        if cuda.is_available():
            return True, ""
        return False, "cuda.is_available() is False; install the 'cuda' extra on a machine with an NVIDIA GPU"
    except Exception as e:
        return False, str(e)
