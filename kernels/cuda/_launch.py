"""Launch helpers shared by the CUDA twins: device arrays in and out, grid sizes, fills, copies.

Every 1-D kernel here walks its index space with a grid-stride loop, so any launch configuration
covers it; ``config(n)`` picks (blocks, threads) with the grid rounded up and capped.  Tests change
the configuration with ``launch_config(threads=..., max_blocks=...)`` to exercise partial blocks and
the stride loop.  Arrays are float32 (int64 for pooling indices), C-contiguous on the device.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np
from numba import cuda, float32

# Threads per block of the 1-D kernels, and the cap on blocks (grid-stride loops cover the rest).
THREADS = 256
MAX_BLOCKS = 65535
# Threads per block of the reduction kernels (a power of two: the shared tree halves it).
RED_THREADS = 128

_config = {"threads": THREADS, "max_blocks": MAX_BLOCKS}


@contextlib.contextmanager
def launch_config(threads: int | None = None, max_blocks: int | None = None):
    """Temporarily launch the 1-D kernels with ``threads`` per block and at most ``max_blocks``."""
    old = dict(_config)
    if threads is not None:
        _config["threads"] = int(threads)
    if max_blocks is not None:
        _config["max_blocks"] = int(max_blocks)
    try:
        yield
    finally:
        _config.update(old)


def config(n: int) -> tuple[int, int]:
    """(blocks, threads) for ``n`` work items: the grid rounded up, capped at ``max_blocks``."""
    threads = _config["threads"]
    blocks = (max(int(n), 1) + threads - 1) // threads
    return min(blocks, _config["max_blocks"]), threads


def red_threads() -> int:
    """Threads per block of a reduction: a power of two, at most RED_THREADS and the 1-D setting."""
    n = min(RED_THREADS, _config["threads"])
    return 1 << (max(n, 1).bit_length() - 1)


def red_blocks(n: int) -> int:
    """Blocks of a reduction with one block per result (block-stride loop past the cap)."""
    return max(1, min(int(n), _config["max_blocks"]))


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for a >= 0, b > 0."""
    return (a + b - 1) // b


def f32(x: float) -> np.float32:
    """A float32 scalar argument (a Python float would make the kernel compute in float64)."""
    return np.float32(x)


def device(a: Any, dtype: Any = np.float32) -> Any:
    """A C-contiguous Numba device array of ``dtype`` (None: any) viewing or, if it must, copying
    ``a``.

    ``a`` is a Numba device array (real or simulated) or any object with
    ``__cuda_array_interface__`` (CuPy, PyTorch CUDA: zero-copy).  Non-contiguous arrays are copied
    on the device; the data never goes through the host.  Dtypes are trusted (validated above).
    """
    if not hasattr(a, "__cuda_ndarray__"):  # CuPy / PyTorch: wrap without copying
        a = cuda.as_cuda_array(a)
    if dtype is not None and np.dtype(a.dtype) != np.dtype(dtype):
        raise TypeError(f"expected a {np.dtype(dtype)} device array, got {a.dtype}")
    if a.is_c_contiguous():
        return a
    out = cuda.device_array(a.shape, dtype=a.dtype)
    src, dst = _as4d(a), out.reshape(_shape4d(a.shape))
    blocks, threads = config(out.size)
    _copy4d[blocks, threads](src, dst, out.size)
    return out


def inplace(a: Any, dtype: Any = np.float32) -> Any:
    """A Numba device array viewing ``a`` (never a copy): for arrays a kernel updates in place."""
    if not hasattr(a, "__cuda_ndarray__"):
        a = cuda.as_cuda_array(a)
    if np.dtype(a.dtype) != np.dtype(dtype) or not a.is_c_contiguous():
        raise ValueError(
            f"an array updated in place must be a C-contiguous {np.dtype(dtype)} device array, "
            f"got dtype {a.dtype}, shape {tuple(a.shape)}, strides {tuple(a.strides)}"
        )
    return a


def empty(shape: Any, dtype: Any = np.float32) -> Any:
    return cuda.device_array(tuple(int(s) for s in shape), dtype=dtype)


def full(shape: Any, value: float, dtype: Any = np.float32) -> Any:
    out = empty(shape, dtype)
    if out.size:
        blocks, threads = config(out.size)
        _fill[blocks, threads](out.reshape(out.size), value, out.size)
    return out


def zeros(shape: Any, dtype: Any = np.float32) -> Any:
    return full(shape, 0, dtype)


_scratch = threading.local()


def workspace(name: str, n: int) -> Any:
    """A flat float32 device buffer of ``n`` elements, reused by later calls (grown when short).

    For scratch that dies within one call (column buffers), never for a result.  One set per
    thread and device, so concurrent callers never share one.
    """
    cache = getattr(_scratch, "buffers", None)
    if cache is None:
        cache = _scratch.buffers = {}
    key = (name, getattr(cuda.get_current_device(), "id", 0))
    buf = cache.get(key)
    if buf is None or buf.size < n:
        buf = cache[key] = None  # drop the old buffer before allocating the larger one
        buf = cache[key] = cuda.device_array(int(n), dtype=np.float32)
    return buf[: int(n)]


def flat(a: Any) -> Any:
    """1-D view of a C-contiguous device array (no copy)."""
    return a.reshape(a.size)


def _shape4d(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) > 4:
        raise ValueError(f"at most 4 dimensions are supported, got shape {shape}")
    return (1,) * (4 - len(shape)) + shape


def _as4d(a: Any) -> Any:
    """A strided 4-D view of a device array of at most 4 dimensions (leading axes of length 1)."""
    if a.ndim == 4:
        return a
    idx = (None,) * (4 - a.ndim)
    if hasattr(a, "__cuda_ndarray__") and hasattr(a, "_ary"):  # simulator: a NumPy view
        return type(a)(a._ary[idx])
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    strides = (0,) * (4 - a.ndim) + tuple(a.strides)
    return DeviceNDArray(_shape4d(a.shape), strides, a.dtype, gpu_data=a.gpu_data)


@cuda.jit(device=True)
def unravel3(t, C, D):
    """``(b, c, d)`` of flat index ``t`` in a C-ordered ``(B, C, D)`` array."""
    return t // (C * D), (t // D) % C, t % D


@cuda.jit(device=True)
def unravel4(t, B, C, D):
    """``(a, b, c, d)`` of flat index ``t`` in a C-ordered ``(A, B, C, D)`` array."""
    d = t % D
    c = (t // D) % C
    b = (t // (C * D)) % B
    return t // (B * C * D), b, c, d


# The block reductions below are the one tree used by every reduction kernel.  Each thread first
# writes its partial result into a shared array of RED_THREADS entries; blockDim.x is a power of
# two (``red_threads()``).  Entry i absorbs entry i + step for step = blockDim.x/2, ..., 1, a fixed
# order, so a result repeats bit for bit.  Every thread of the block must call them (they hold
# barriers); they return the result to every thread, and the caller must ``cuda.syncthreads()``
# before it writes the shared arrays again.


@cuda.jit(device=True)
def block_sum(part):
    """Sum of ``part[:blockDim.x]`` (one partial sum per thread), in the fixed tree order."""
    tid = cuda.threadIdx.x
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if tid < step:
            part[tid] += part[tid + step]
        cuda.syncthreads()
        step //= 2
    return part[0]


@cuda.jit(device=True)
def block_min_max(lo, hi):
    """``(min of lo[:blockDim.x], max of hi[:blockDim.x])`` (one pair per thread), one tree."""
    tid = cuda.threadIdx.x
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if tid < step:
            lo[tid] = min(lo[tid], lo[tid + step])
            hi[tid] = max(hi[tid], hi[tid + step])
        cuda.syncthreads()
        step //= 2
    return lo[0], hi[0]


@cuda.jit
def _fill(out, value, n):
    # out: (n,) flat
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = value


@cuda.jit
def _copy4d(src, dst, n):
    # src: any strides, dst: C-contiguous, both (A, B, C, D)
    _, B, C, D = dst.shape
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        a, b, c, d = unravel4(i, B, C, D)
        dst[a, b, c, d] = src[a, b, c, d]


@cuda.jit
def _sum_middle(x, N, K, P, divisor, out):
    # out[k] = (sum over n < N, p < P of x[(n*K + k)*P + p]) / divisor; one block per k;
    # blockDim.x is a power of two <= RED_THREADS
    part = cuda.shared.array(RED_THREADS, float32)
    tid = cuda.threadIdx.x
    for k in range(cuda.blockIdx.x, K, cuda.gridDim.x):
        s = float32(0.0)
        for t in range(tid, N * P, cuda.blockDim.x):
            n = t // P
            s += x[(n * K + k) * P + t - n * P]
        part[tid] = s
        total = block_sum(part)
        if tid == 0:
            out[k] = total / divisor
        cuda.syncthreads()


def sum_middle(x: Any, N: int, K: int, P: int, divisor: float = 1.0, out: Any = None) -> Any:
    """``x.reshape(N, K, P).sum(axis=(0, 2)) / divisor`` as a (K,) device array (``out`` if given).

    ``x`` is a C-contiguous float32 device array of N*K*P elements: conv2d's bias gradient is
    (N, K, Ho*Wo), linear's is (N, K, 1), a total is (1, 1, n).
    """
    if out is None:
        out = empty((K,))
    _sum_middle[red_blocks(K), red_threads()](flat(x), N, K, P, f32(divisor), out)
    return out
