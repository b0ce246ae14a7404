"""Dense: y = act(x W^T + b) over the last axis (PyTorch nn.Linear names ``{prefix}.weight`` (O, I),
``{prefix}.bias`` (O,); init U(-1/sqrt(I), 1/sqrt(I))); act is none, relu or sigmoid (Keras's
Dense(units, activation))."""

from __future__ import annotations

import math

from .base import Batch, Layer, uniform_init

ACTIVATIONS = ("none", "relu", "sigmoid", "tanh")


class Dense(Layer):
    """x (..., I) -> y (..., O): (T, B, I) per step or (B, I) after a Pool."""

    def __init__(self, prefix: str, inputs: int, outputs: int, activation: str = "none"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: choose {', '.join(ACTIVATIONS)}")
        self.wname, self.bname = f"{prefix}.weight", f"{prefix}.bias"
        self.inputs, self.out_features, self.activation = inputs, outputs, activation

    def shapes(self):
        return {self.wname: (self.out_features, self.inputs), self.bname: (self.out_features,)}

    def init(self, views, rng):
        uniform_init(views, (self.wname, self.bname), 1.0 / math.sqrt(self.inputs), rng)

    def forward(self, x, batch: Batch):
        lead = x.shape[:-1]
        N = math.prod(lead)
        O = self.out_features
        buf = self._buf = self.buffers(batch, lambda T, B: {})
        if lead not in buf:
            buf[lead] = {"y": self.zeros(N, O), "dx": self.zeros(N, self.inputs), "dz": self.zeros(N, O)}
        b = self._cur = buf[lead]
        self._x = x.reshape(N, self.inputs)
        self.be.linear_forward(b["y"], self._x, self.p[self.wname], self.p[self.bname])  # (N, O)
        if self.activation != "none":
            self.be.activation(b["y"], b["y"], self.activation)
        return b["y"].reshape(*lead, O)

    def backward(self, dy, batch: Batch):
        b = self._cur
        N, O = b["y"].shape
        dz = dy.reshape(N, O)
        if self.activation != "none":
            self.be.activation_backward(b["dz"], dz, b["y"], self.activation)
            dz = b["dz"]
        self.be.linear_backward(b["dx"], self.g[self.wname], self.g[self.bname], dz, self._x, self.p[self.wname])
        return b["dx"].reshape(*dy.shape[:-1], self.inputs)
