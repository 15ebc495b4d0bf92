"""Array-type helpers shared by the dispatchers: is this a GPU array, which twin runs it."""

from __future__ import annotations

from typing import Any


def is_cuda_array(x: Any) -> bool:
    """True for objects that live on a CUDA device.

    Real devices expose ``__cuda_array_interface__`` (Numba device arrays, CuPy arrays, PyTorch CUDA
    tensors); under Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``) device arrays are
    ``FakeCUDAArray`` objects that carry ``__cuda_ndarray__`` instead.
    """
    return hasattr(x, "__cuda_array_interface__") or hasattr(x, "__cuda_ndarray__")
