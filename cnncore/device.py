"""Where arrays live: ``cuda_available()`` and helpers to move arrays between host and device."""

from __future__ import annotations

import os

import numpy as np

from cnncore_kernels import elementwise as _ke
from cnncore_kernels.arrays import is_cuda_array

__all__ = [
    "add",
    "concat",
    "cuda_available",
    "is_cuda_array",
    "scale",
    "take",
    "to_device",
    "to_numpy",
]


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


def to_numpy(a) -> np.ndarray:
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


def to_device(a, device: str):
    """``device`` is ``"cpu"`` (NumPy) or ``"cuda"`` (a float32 Numba device array)."""
    if device == "cpu":
        return to_numpy(a)
    if device in ("cuda", "gpu") or str(device).startswith("cuda"):
        cuda = _numba_cuda()
        if is_cuda_array(a):
            return a
        return cuda.to_device(np.ascontiguousarray(a, dtype=np.float32))
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def add(a, b):
    """``a + b`` on whichever device the arrays live (used to accumulate gradients)."""
    return _ke.add(a, b)


def scale(alpha: float, a):
    """``alpha * a`` on whichever device the array lives (a new array)."""
    return _ke.scale(alpha, a)


def concat(parts: list, axis: int = 1):
    """The arrays ``parts`` joined along ``axis`` (0 or 1), on their device (no host round trip
    for GPU arrays: device-to-device copies into the slices of a new Numba device array)."""
    if not is_cuda_array(parts[0]):
        return np.concatenate(parts, axis=axis)
    cuda = _numba_cuda()
    shape = list(parts[0].shape)
    shape[axis] = sum(int(p.shape[axis]) for p in parts)
    iface = getattr(parts[0], "__cuda_array_interface__", None)  # torch: no NumPy dtype
    dtype = np.dtype(iface["typestr"]) if iface is not None else np.dtype(parts[0].dtype)
    out = cuda.device_array(tuple(shape), dtype=dtype)
    c = 0
    for p in parts:
        k = int(p.shape[axis])
        if axis == 0:
            out[c : c + k] = p
        else:
            out[:, c : c + k] = p
        c += k
    return out


def take(a, start: int, stop: int, axis: int = 1):
    """``a[start:stop]`` along ``axis`` (0 or 1) as a C-contiguous array on ``a``'s device (a view
    when that is already contiguous on the CPU, else a copy)."""
    idx = (slice(start, stop),) if axis == 0 else (slice(None), slice(start, stop))
    if not is_cuda_array(a):
        return np.ascontiguousarray(a[idx])
    cuda = _numba_cuda()
    if not hasattr(a, "__cuda_ndarray__"):
        a = cuda.as_cuda_array(a)
    view = a[idx]
    if view.is_c_contiguous():
        return view
    out = cuda.device_array(tuple(view.shape), dtype=view.dtype)
    out[:] = view
    return out
