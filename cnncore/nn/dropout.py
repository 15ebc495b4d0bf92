"""Inverted dropout."""

from __future__ import annotations

import numpy as np

from cnncore import _validate as v
from cnncore import functional as F
from cnncore.functional.activation import dropout_p
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
        self.p = dropout_p(p)
        self.seed(seed)
        self._key: int | None = None

    def seed(self, seed: int | np.random.SeedSequence | None = None) -> None:
        """Reseed this layer's generator (None: a fresh seed drawn from ``cnncore.nn.init``)."""
        if seed is None:
            seed = int(init.generator().integers(0, 2**63))
        self._rng = np.random.default_rng(seed)

    def rng_state(self) -> dict:
        return self._rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state

    def forward(self, x):
        x = v.any_float_array(x, "x")  # validate before the generator advances
        if not self.training or self.p == 0.0:
            self._key = None
            self._remember_output(x)
            return x
        # one draw of the layer's generator per call: the mask is a hash of it (the same on CPU
        # and GPU), recomputed by the backward instead of stored
        key = int(self._rng.integers(0, 2**63))
        y = F.dropout(x, self.p, key)
        self._key = key if grad_enabled() else None
        self._remember_output(y)
        return y

    def backward(self, dy):
        self._check_dy(dy)
        if self._key is None:  # identity (eval mode or p == 0)
            return dy
        return F.dropout_backward(dy, self.p, self._key)

    def extra_repr(self) -> str:
        return f"p={self.p}"
