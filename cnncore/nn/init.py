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


class LazyUniformFanIn:
    """``uniform_fan_in(shape, fan_in, dtype)`` drawn on first use.  Shape and dtype are known at
    once; the seed is drawn now from the engine's generator, so ``manual_seed`` and the order of
    construction fix the values, whenever (or whether) they are materialised."""

    __slots__ = ("dtype", "fan_in", "seed", "shape")

    def __init__(self, shape: tuple[int, ...], fan_in: int, dtype=np.float32) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.fan_in = int(fan_in)
        self.dtype = np.dtype(dtype)
        self.seed = int(_rng.integers(2**63))

    def materialize(self) -> np.ndarray:
        bound = 1.0 / math.sqrt(self.fan_in) if self.fan_in > 0 else 0.0
        rng = np.random.default_rng(self.seed)
        out = rng.random(self.shape, dtype=np.float32 if self.dtype == np.float32 else np.float64)
        out *= 2 * bound
        out -= bound
        return out.astype(self.dtype, copy=False)
