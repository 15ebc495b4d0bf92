"""Inverted dropout."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from cnncore import _validate as v
from cnncore import device as _device
from cnncore.nn import init
from cnncore.nn.module import Module, grad_enabled


class Dropout(Module):
    """Inverted dropout, as ``torch.nn.Dropout``: in training mode each element is zeroed with
    probability ``p`` and the survivors are scaled by ``1 / (1 - p)``; in eval mode the identity.

    Each layer draws from its own generator, seeded from ``cnncore.nn.init`` when built (or from
    ``seed``), so runs repeat under ``manual_seed``; ``rng_state``/``set_rng_state`` let a
    checkpoint resume the exact sequence of masks.  Caches the scaled mask (training, with
    gradients enabled).
    """

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise TypeError(f"p must be a number, got {p!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
        self.p = float(p)
        self.seed(seed)
        self._mask = None

    def seed(self, seed: int | np.random.SeedSequence | None = None) -> None:
        """Reseed this layer's generator (None: a fresh seed drawn from ``cnncore.nn.init``)."""
        if seed is None:
            seed = int(init.generator().integers(0, 2**63))
        self._rng = np.random.default_rng(seed)

    def rng_state(self) -> dict:
        return self._rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state

    def forward(self, x: Any) -> Any:
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        if _device.is_cuda_array(x):
            raise TypeError(
                "Dropout in training mode runs on CPU arrays only (no CUDA dropout kernel yet); "
                "call model.eval() for inference on the GPU"
            )
        x = v.float_array(x, "x")
        dtype = x.dtype
        if self.p == 1.0:
            mask = np.zeros(x.shape, dtype=dtype)
        else:
            keep = self._rng.random(x.shape, dtype=dtype) >= self.p
            mask = keep.astype(dtype) * dtype.type(1.0 / (1.0 - self.p))
        self._mask = mask if grad_enabled() else None
        return x * mask

    def backward(self, dy: Any) -> Any:
        if not self.training or self.p == 0.0:
            return dy
        if self._mask is None:
            raise RuntimeError("Dropout.backward needs a forward pass with gradients enabled first")
        if tuple(dy.shape) != self._mask.shape:
            raise ValueError(
                f"dy must have shape {self._mask.shape} (the input of the forward), got "
                f"{tuple(dy.shape)}"
            )
        return dy * self._mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
