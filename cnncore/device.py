"""Where arrays live: ``cuda_available()`` and helpers to move arrays between host and device."""

from __future__ import annotations

import os


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
