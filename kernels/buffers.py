"""Reused memory for the arrays the kernels allocate: large freed blocks are kept for the next call.

A NumPy array of tens of megabytes is mapped fresh from the kernel on every allocation (glibc
maps blocks above its mmap threshold, at most 32 MiB, and gives heap memory above its trim
threshold back): each call then pays a page fault and the zeroing of every 4 KiB page it writes,
single-threaded in the kernel, and evicts the caches with the zeros (``clear_page_erms`` took 15%
of the profile of a (128,64,32,32)->64 3x3 forward, whose output is 33.5 MB).  Measured with this
pool against without (2026-12, Intel Xeon with AVX-512, 2 threads, our conv2d alone, medians of 6
and 3 interleaved rounds, ms): that forward 36.5 -> 20.9 and 37.5 -> 27.9, its backward 68.5 ->
66.3 and 78.1 -> 67.2; pixel65's fc4 (1,128,288,288)->256 5x5 (67 MB out) 174 -> 160 forward,
409 -> 375 backward; layers with outputs of a few MB level within the noise (0.8-1.1x).

So every kernel dispatcher runs under ``pooled``: while it runs, NumPy allocates through
``_buffers``' handler (NEP 49; a context variable, so other threads and the caller's own arrays
are untouched), which maps blocks of 1 MiB and more itself and, when such an array is freed, keeps
the block for the next allocation of the same size class, its pages already there.  Arrays keep
their handler for life, so the blocks of arrays returned to the caller come back when the caller
drops them.  Smaller arrays come from ``posix_memalign``.  Every array of the handler starts on a
64-byte line.

The bound: at most ``limit()`` bytes of freed blocks are kept (the oldest are unmapped first); an
allocation takes the smallest kept block of its size class or up to twice it.  Blocks in use are
the caller's arrays, as with any allocator.  The limit is 1 GiB or an eighth of the physical
memory, whichever is less, or ``CNNCORE_BUFFER_CACHE_MB`` (MiB, read at import; 0 keeps nothing,
so every large block is unmapped when freed).  ``set_limit``, ``stats`` and ``release`` change and
report it (``cnncore.memory`` is the validated public face).

The cost is resident memory, and a single call gains nothing.  Measured (same machine, pixel65's
d-sparse ``dense.predict``, 3 alternating runs each): one 1024x1024 image in a fresh process
peaked at 1732 MB keeping nothing, 1886 MB keeping up to 256 MiB and 2574 MB keeping up to 1 GiB
(tiled by 256: 265, 371 and 389 MB), and that one call ran 4.0-6.1 s keeping nothing against
4.7-8.7 s and 5.5-9.9 s (on this virtual machine, pages the guest has not used before are slow to
fault in, and held blocks push new allocations onto them).  Repeated calls are what it is for: at
512x512, 0.75-0.85 s per call from the second on keeping up to 1 GiB (19 of 32 large allocations
served by kept blocks), 1.06-1.20 s keeping up to 256 MiB (7 of 32), against 1.17 s in the sweep
before this handler.  Where memory is tighter than time, lower the limit.
"""

from __future__ import annotations

import functools
import os

from cnncore_kernels import _buffers

ENV = "CNNCORE_BUFFER_CACHE_MB"
NAME = _buffers.NAME  # numpy.lib.array_utils has no getter; get_handler_name(arr) reports this


def default_limit(environ=os.environ) -> int:
    """Bytes of freed blocks kept: ``CNNCORE_BUFFER_CACHE_MB`` MiB if set, else min(1 GiB, an
    eighth of the physical memory)."""
    value = environ.get(ENV, "").strip()
    if value:
        try:
            mib = int(value)
        except ValueError:
            mib = -1
        if not 0 <= mib <= 1 << 40:
            raise ValueError(f"{ENV} must be a whole number of MiB in [0, 2**40], got {value!r}")
        return mib << 20
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        physical = 8 << 30
    return min(1 << 30, physical // 8)


def pooled(kernel):
    """``kernel`` with NumPy allocating through the buffer handler while it runs."""

    @functools.wraps(kernel)
    def run(*args, **kwargs):
        previous = _buffers.enter()
        try:
            return kernel(*args, **kwargs)
        finally:
            _buffers.leave(previous)

    return run


def set_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` bytes of freed blocks (blocks beyond it are unmapped now)."""
    _buffers.set_limit(nbytes)


def limit() -> int:
    """The current limit in bytes."""
    return _buffers.stats()["limit"]


def stats() -> dict:
    """limit, kept_bytes / kept_blocks (freed blocks kept), live_bytes / live_blocks (mapped
    blocks in use), hits / misses (mapped allocations served by a kept block / newly mapped),
    foreign (frees of blocks the handler did not allocate: always 0)."""
    return _buffers.stats()


def release() -> None:
    """Unmap every kept block (the limit stays)."""
    keep = limit()
    _buffers.set_limit(0)
    _buffers.set_limit(keep)


set_limit(default_limit())
