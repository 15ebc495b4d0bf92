"""Random initialisation of parameters (PyTorch's defaults) and the engine's seed."""

from __future__ import annotations

import math

import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator used to initialise parameters (and by Dropout unless given its own)."""
    global _rng
    _rng = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    return _rng


def uniform_fan_in(shape: tuple[int, ...], fan_in: int, dtype=np.float32) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Conv2d/Linear weights and biases
    (kaiming_uniform with a=sqrt(5) reduces to this bound)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    out = _rng.random(shape, dtype=np.float32 if dtype == np.float32 else np.float64)
    out *= 2 * bound
    out -= bound
    return out.astype(dtype, copy=False)
