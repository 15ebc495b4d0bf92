"""Where arrays live: ``cuda_available()`` and helpers to move arrays between host and device."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cnncore_kernels.arrays import is_cuda_array

__all__ = ["add", "cuda_available", "is_cuda_array", "scale", "to_device", "to_numpy"]


def cuda_available() -> bool:
    """Whether a real CUDA GPU can be used (False under the simulator or without numba-cuda)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return False
    try:
        from numba import cuda
    except ImportError:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:
        return False


def _numba_cuda():
    try:
        from numba import cuda
    except ImportError as e:  # pragma: no cover - depends on the install
        raise RuntimeError("the CUDA kernels need numba-cuda: pip install 'cnncore[cuda]'") from e
    return cuda


def to_numpy(a: Any) -> np.ndarray:
    """A host NumPy array from a NumPy array, a device array or a torch tensor (CPU or CUDA)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch tensor
        return a.detach().cpu().numpy()
    if hasattr(a, "copy_to_host"):  # numba device array (real or simulated)
        return a.copy_to_host()
    if is_cuda_array(a):
        return _numba_cuda().as_cuda_array(a).copy_to_host()
    return np.asarray(a)


def to_device(a: Any, device: str) -> Any:
    """``device`` is ``"cpu"`` (NumPy) or ``"cuda"`` (a float32 Numba device array)."""
    if device == "cpu":
        return to_numpy(a)
    if device in ("cuda", "gpu") or str(device).startswith("cuda"):
        cuda = _numba_cuda()
        if is_cuda_array(a):
            return a
        return cuda.to_device(np.ascontiguousarray(a, dtype=np.float32))
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def add(a: Any, b: Any) -> Any:
    """``a + b`` on whichever device the arrays live (used to accumulate gradients)."""
    if is_cuda_array(a):
        from cnncore_kernels.cuda import elementwise

        return elementwise.add(a, b)
    return a + b


def scale(alpha: float, a: Any) -> Any:
    """``alpha * a`` on whichever device the array lives (a new array)."""
    if is_cuda_array(a):
        from cnncore_kernels.cuda import elementwise

        return elementwise.scale(alpha, a)
    return a * a.dtype.type(alpha)
