"""Keep libgomp's idle threads from spinning, whether or not an OpenMP runtime was loaded first.

Our OpenMP loops (im2col, pooling, ...) alternate with GEMMs and serial glue.  With libgomp's
default wait policy an idle OpenMP thread spins for 300,000 rounds after every parallel region and
steals the cores the work needs: measured on 2 cores, conv2d (8,64,56,56) 0.32 s instead of
0.043 s, and 200 small kernels with 2 ms pauses between them 2-7.7 s instead of 0.47 s (provisional,
loaded machine, 2026-12-01).  libgomp reads ``OMP_WAIT_POLICY`` (and ``GOMP_SPINCOUNT``) once,
when it is loaded, and one copy serves the whole process: PyTorch's bundled ``libgomp.so.1`` has
the same soname, so after ``import torch`` our extensions use torch's copy, already initialised.

The scheme:
- ``OMP_WAIT_POLICY`` set by the user: kept, nothing else is done.
- libgomp not loaded yet (cnncore imported first): ``OMP_WAIT_POLICY=PASSIVE`` before it loads.
- libgomp loaded already (torch imported first): there is no call to change the policy, but
  libgomp has a documented rule: "if there are more OpenMP threads than available CPUs, 1000 and
  100 spins are used for OMP_WAIT_POLICY being ACTIVE or undefined" (GOMP_SPINCOUNT in the libgomp
  manual), instead of 30 billion and 300,000.  A daemon thread runs one parallel region of
  ``cpus + 1`` threads and stays alive, so its ``cpus`` pooled workers stay docked, asleep, and
  libgomp always manages more threads than CPUs: every team, ours and torch's, spins at most 100
  rounds (about a microsecond) before sleeping, which measures like PASSIVE.  The cost: ``cpus``
  sleeping threads.  ``throttle_thread()`` returns that thread (None when it was not needed).
"""

from __future__ import annotations

import os
import threading
from collections.abc import MutableMapping

_THREAD_NAME = "cnncore-openmp-throttle"
_throttle: threading.Thread | None = None


def openmp_already_loaded() -> bool:
    """Whether a libgomp is mapped into this process already (e.g. by ``import torch``)."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return False


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _hold_threads(run_region, threads: int, started: threading.Event) -> None:
    run_region(threads)
    started.set()
    threading.Event().wait()  # forever: the pooled workers live as long as this thread


def settle_wait_policy(environ: MutableMapping[str, str]) -> None:
    """Apply the scheme of this module's docstring once per process."""
    global _throttle
    if "OMP_WAIT_POLICY" in environ or _throttle is not None:
        return
    if not openmp_already_loaded():
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return
    # imported here, not in the thread: the package's import lock is held until we return
    from cnncore_kernels._threads import run_parallel_region

    started = threading.Event()
    _throttle = threading.Thread(
        target=_hold_threads,
        args=(run_parallel_region, _cpus() + 1, started),
        name=_THREAD_NAME,
        daemon=True,
    )
    _throttle.start()
    started.wait()


def throttle_thread() -> threading.Thread | None:
    """The daemon thread that keeps libgomp's spinning throttled, or None if not needed."""
    return _throttle
