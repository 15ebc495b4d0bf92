"""The memory the CPU kernels keep for reuse: freed large blocks of their arrays.

Arrays of 1 MiB and more that the kernels allocate (outputs, gradients, temporaries) come from
mapped blocks that are kept when the array is freed and handed to the next allocation of the same
size class or of down to half of it, so repeated calls (a training loop, a benchmark) do not pay
the page faults and page zeroing of fresh memory; see ``cnncore_kernels.buffers``. At most a limit
of freed bytes is kept (by default 1 GiB or an eighth of the physical memory, whichever is less;
the environment variable ``CNNCORE_BUFFER_CACHE_MB`` sets it at import), like the freed blocks
PyTorch's CUDA caching allocator keeps, and these calls read and change it.
"""

from __future__ import annotations

from cnncore import _validate as v
from cnncore_kernels import buffers as _buffers

__all__ = ["buffer_cache_info", "empty_buffer_cache", "set_buffer_cache_limit"]


def buffer_cache_info() -> dict:
    """The cache's state, a dict of ints: ``limit`` (most freed bytes kept), ``kept_bytes`` and
    ``kept_blocks`` (freed blocks kept now), ``live_bytes`` and ``live_blocks`` (blocks of arrays
    alive now), ``hits`` and ``misses`` (allocations of 1 MiB and more served by a kept block /
    newly mapped, since import), ``foreign`` (always 0)."""
    return _buffers.stats()


def set_buffer_cache_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` bytes of freed blocks; kept blocks beyond it are returned to the
    system now.  0 keeps none: every large block is returned when its array is freed."""
    nbytes = v.integer(nbytes, "nbytes")
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    _buffers.set_limit(nbytes)


def empty_buffer_cache() -> None:
    """Return every kept block to the system (as ``torch.cuda.empty_cache``); the limit stays."""
    _buffers.release()
