"""Helpers of the CUDA tests; importing this module turns Numba's CUDA simulator on.

numba.cuda decides once, at its first import, whether it simulates; if some module imported it
earlier without the simulator, these tests cannot run correctly, so importing this module fails
loudly instead of testing the wrong thing.  (Setting the variable for the whole pytest process is
harmless: ``cnncore.cuda_available()`` then says False, and the CPU paths never import numba.)

Speed: the simulator runs every CUDA thread as a Python thread, so the tests use tiny shapes and
small launch configurations.  The SGEMM's tile constants are module globals, which the simulator
reads at run time: the ``small_gemm_tiles`` fixture (autouse, conftest.py) shrinks them so tiny
matrices still span several tiles, and the GEMM tests also run the real GPU tiles.
"""

from __future__ import annotations

import os
import sys

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numpy as np  # noqa: E402

if "numba.cuda" in sys.modules:
    from numba.cuda.core import config as _cuda_config

    if not _cuda_config.ENABLE_CUDASIM:
        raise RuntimeError(
            "numba.cuda was imported without NUMBA_ENABLE_CUDASIM=1 before tests/kernels/cuda was "
            "collected; run the suite with NUMBA_ENABLE_CUDASIM=1 set in the environment"
        )

import threading  # noqa: E402
import traceback  # noqa: E402

from numba import cuda  # noqa: E402
from numba.cuda.simulator import kernelapi as _kernelapi  # noqa: E402

from cnncore_kernels.cuda import _gemm  # noqa: E402
from cnncore_kernels.cuda._launch import launch_config  # noqa: E402, F401  (re-exported)


def _patch_shared_array_race() -> None:
    """Make the simulator's ``cuda.shared.array`` thread-safe.

    Numba's simulator (numba-cuda 0.30) allocates a block's shared array when the first of its
    threads reaches the line: ``get(key)``, and if that is None, ``np.empty`` and store, with no
    lock.  Two threads that both pass the check before either stores get *different* arrays, so
    they do not share memory and read uninitialised values.  The short GIL switch interval of
    the tests (conftest) made this visible: about 1 SGEMM launch in 500 returned garbage.  Same
    logic as the original (allocation keyed by the calling line), under a lock.
    """
    cls = _kernelapi.FakeCUDAShared
    if getattr(cls.array, "_cnncore_locked", False):
        return
    original = cls.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory / unsupported: as before
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, _kernelapi.types.Type):
            dtype = _kernelapi.numpy_support.as_dtype(dtype)
        caller = tuple(traceback.extract_stack(sys._getframe(1), limit=1)[0])[0:2]
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    array._cnncore_locked = True
    cls.array = array


_patch_shared_array_race()

# 1-D launch configurations (threads per block, block cap): partial blocks, a single thread per
# block, and caps that make the grid-stride loops go round several times.
LAUNCH_CONFIGS = [(32, 2), (96, 1), (1, 5)]


def tile_constants(bm: int, bn: int, bk: int, ty: int, tx: int) -> dict[str, int]:
    """The SGEMM module's compile-time constants for a bm x bn x bk tile on ty x tx threads."""
    nt = ty * tx
    assert bm % ty == 0 and bn % tx == 0 and (bm * bk) % nt == 0 and (bk * bn) % nt == 0
    return {
        "BM": bm, "BN": bn, "BK": bk, "TY": ty, "TX": tx, "RM": bm // ty, "RN": bn // tx,
        "RMN": (bm // ty) * (bn // tx), "NTHREADS": nt, "A_LOADS": bm * bk // nt,
        "B_LOADS": bk * bn // nt,
    }  # fmt: skip


# The module's own (GPU) tiles, read before any test patches them.
GPU_TILES = {name: getattr(_gemm, name) for name in tile_constants(16, 16, 4, 4, 4)}
# Tiny tiles for the simulator: 8 threads, a 8 x 8 x 4 tile, a 2 x 4 register tile per thread.
SMALL_TILES = tile_constants(8, 8, 4, 4, 2)


def use_tiles(monkeypatch, tiles: dict[str, int]) -> None:
    """Patch the SGEMM's tile constants (the simulator reads module globals at run time)."""
    for name, value in tiles.items():
        monkeypatch.setattr(_gemm, name, value)


def dev(a: np.ndarray):
    """A device (simulator) copy of a host array."""
    return cuda.to_device(np.ascontiguousarray(a))


def host(a) -> np.ndarray:
    """The host copy of a device array; fails if ``a`` is not a device array."""
    assert hasattr(a, "__cuda_ndarray__"), f"expected a device array, got {type(a).__name__}"
    return a.copy_to_host()
