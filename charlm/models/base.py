"""Parameters of a composed model in ONE flat buffer, and the sequential composition.

``Params`` gathers the layers' named shapes (PyTorch state-dict order), allocates ``flat`` and
``grad_flat`` on the backend with named views (``params`` / ``grads``), initializes on the host
layer by layer from one np.random.Generator (so a seed gives the same weights on every device)
and binds every layer to its views. The optimizer and the gradient clip then work on the flat
buffers in single fused passes.

``Sequential`` runs layers in order: forward(x, batch) -> top output; backward(dy, batch).
Models (``charlm.models.classifier``, ``tagger``, ``lm``) are a Sequential plus a head.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backends


class Params:
    def __init__(self, layers, *, seed: int = 0, dtype=np.float32, device: str = "cpu"):
        self.layers = list(layers)
        self.dtype, self.device = np.dtype(dtype), device
        self.backend = backends.get(device)
        self.shapes: dict[str, tuple[int, ...]] = {}
        for layer in self.layers:
            for name, shape in layer.shapes().items():
                if name in self.shapes:
                    raise ValueError(f"two layers name a parameter {name!r}")
                self.shapes[name] = tuple(shape)
        self.names = list(self.shapes)
        self.size = sum(math.prod(s) for s in self.shapes.values())
        host = np.empty(self.size, dtype=self.dtype)
        views = self.views(host)
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            layer.init(views, rng)
        self.flat = self.backend.to_device(host)                    # (P,)
        self.grad_flat = self.backend.zeros(self.size, self.dtype)  # (P,)
        self.params = self.views(self.flat)
        self.grads = self.views(self.grad_flat)
        for layer in self.layers:
            layer.bind(self.backend, self.dtype, self.params, self.grads)

    def rebind(self, device: str) -> None:
        """Run on another host-memory backend from now on (``numpy`` <-> ``cpu``: the same NumPy
        arrays, so parameters, gradients and every caller's references stay valid; buffers are remade)."""
        if {device, self.device} - {"cpu", "numpy"}:
            raise ValueError(f"rebind: {self.device} -> {device}: only between the host backends cpu and numpy")
        self.device, self.backend = device, backends.get(device)
        for layer in self.layers:
            layer.bind(self.backend, self.dtype, self.params, self.grads)

    def views(self, flat) -> dict:
        out, off = {}, 0
        for name, shape in self.shapes.items():
            n = math.prod(shape)
            out[name] = flat[off:off + n].reshape(shape)
            off += n
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of the parameters, PyTorch names and shapes."""
        host = self.backend.to_host(self.flat)
        return {name: np.array(v, copy=True) for name, v in self.views(host).items()}

    def load_state_dict(self, sd: dict) -> None:
        from ..checkpoint import validate_state_dict

        validate_state_dict(sd, self.shapes)
        host = np.empty(self.size, dtype=self.dtype)
        views = self.views(host)
        for name in self.names:
            views[name][...] = sd[name]
        self.flat[:] = self.backend.to_device(host)


class Sequential:
    """Layers applied in order; each backward returns the gradient for the layer below."""

    def __init__(self, layers):
        self.layers = list(layers)

    def forward(self, x, batch):
        for layer in self.layers:
            x = layer.forward(x, batch)
        return x

    def backward(self, dy, batch):
        for layer in reversed(self.layers):
            dy = layer.backward(dy, batch)
        return dy
