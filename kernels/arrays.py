"""Array-type helpers shared by the dispatchers: is this a GPU array, which twin runs it, a new
array where another one lives."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np


def is_cuda_array(x: Any) -> bool:
    """True for objects that live on a CUDA device.

    Real devices expose ``__cuda_array_interface__`` (Numba device arrays, CuPy arrays, PyTorch CUDA
    tensors); under Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``) device arrays are
    ``FakeCUDAArray`` objects that carry ``__cuda_ndarray__`` instead.
    """
    return hasattr(x, "__cuda_array_interface__") or hasattr(x, "__cuda_ndarray__")


def twin(x: Any, cpu: Any, gpu: str) -> Any:
    """The twin that runs the kernels on ``x``: ``cpu`` (the CPU twin: a Cython module, or a
    namespace of NumPy functions) for host arrays, the module ``cnncore_kernels.cuda.<gpu>`` for
    device arrays.  A dispatcher calls ``twin(x, _pooling, "pooling").max_pool2d(...)``; both twins
    have the same function names and signatures.  The CUDA module is imported here only for a
    device array, so a CPU-only install never imports numba.
    """
    if is_cuda_array(x):
        return importlib.import_module(f"cnncore_kernels.cuda.{gpu}")
    return cpu


def empty(like: Any, shape: tuple[int, ...]) -> Any:
    """A new uninitialised array of ``shape`` on the device of ``like``: a NumPy array of
    ``like``'s dtype, or a float32 device array (the GPU kernels' one dtype) for a device array."""
    if is_cuda_array(like):
        return importlib.import_module("cnncore_kernels.cuda._launch").empty(shape)
    return np.empty(shape, dtype=like.dtype)
