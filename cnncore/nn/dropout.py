"""Inverted dropout."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from cnncore import _validate as v
from cnncore import functional as F
from cnncore.nn import init
from cnncore.nn.module import Module, grad_enabled


class Dropout(Module):
    """Inverted dropout, as ``torch.nn.Dropout``: in training mode each element is zeroed with
    probability ``p`` and the survivors are scaled by ``1 / (1 - p)``; in eval mode the identity.

    Each layer draws from its own generator, seeded from ``cnncore.nn.init`` when built (or from
    ``seed``), so runs repeat under ``manual_seed``; ``rng_state``/``set_rng_state`` let a
    checkpoint resume the exact sequence of masks.  Each call draws one 64-bit key and the mask
    is a hash of it (``cnncore.functional.dropout``): the same on the CPU and the GPU, and the
    backward recomputes it rather than storing it.
    """

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise TypeError(f"p must be a number, got {p!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
        self.p = float(p)
        self.seed(seed)
        self._key: int | None = None
        self._shape: tuple[int, ...] = ()

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
            self._key = None
            return x
        # one draw of the layer's generator per call: the mask is a hash of it (the same on CPU
        # and GPU), recomputed by the backward instead of stored
        x = v.any_float_array(x, "x")  # validate before the generator advances
        key = int(self._rng.integers(0, 2**63))
        y = F.dropout(x, self.p, key)
        self._key = key if grad_enabled() else None
        self._shape = tuple(x.shape)
        return y

    def backward(self, dy: Any) -> Any:
        if not self.training or self.p == 0.0:
            return dy
        if self._key is None:
            raise RuntimeError("Dropout.backward needs a forward pass with gradients enabled first")
        if tuple(dy.shape) != self._shape:
            raise ValueError(
                f"dy must have shape {self._shape} (the input of the forward), got "
                f"{tuple(dy.shape)}"
            )
        return F.dropout_backward(dy, self.p, self._key)

    def extra_repr(self) -> str:
        return f"p={self.p}"
