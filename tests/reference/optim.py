"""Plain-numpy optimizer steps with PyTorch's update rules, written for clarity.

Each function takes the state it needs as a dict of arrays (created on the first call, like
PyTorch's lazily initialised state) and returns the new parameter array.
"""

from __future__ import annotations

import numpy as np


def adam(p, g, state, lr, beta1, beta2, eps, weight_decay, decoupled):
    """torch.optim.Adam (decoupled=False) / torch.optim.AdamW (decoupled=True)."""
    if not state:
        state.update(step=0, m=np.zeros_like(p), v=np.zeros_like(p))
    state["step"] += 1
    t = state["step"]
    if decoupled:
        p = p * (1.0 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    state["m"] = beta1 * state["m"] + (1.0 - beta1) * g
    state["v"] = beta2 * state["v"] + (1.0 - beta2) * g * g
    m_hat = state["m"] / (1.0 - beta1 ** t)
    v_hat = state["v"] / (1.0 - beta2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def sgd(p, g, state, lr, momentum, weight_decay):
    """torch.optim.SGD with dampening 0 and no Nesterov."""
    g = g + weight_decay * p
    if momentum:
        state["buf"] = g.copy() if "buf" not in state else momentum * state["buf"] + g
        g = state["buf"]
    return p - lr * g


def rmsprop(p, g, state, lr, alpha, eps, momentum, weight_decay):
    """torch.optim.RMSprop, not centered."""
    if not state:
        state.update(sq=np.zeros_like(p), buf=np.zeros_like(p))
    g = g + weight_decay * p
    state["sq"] = alpha * state["sq"] + (1.0 - alpha) * g * g
    u = g / (np.sqrt(state["sq"]) + eps)
    if momentum:
        state["buf"] = momentum * state["buf"] + u
        u = state["buf"]
    return p - lr * u
