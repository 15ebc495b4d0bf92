"""Keep libgomp's idle threads from spinning, whether or not an OpenMP runtime was loaded first.

Our OpenMP loops (im2col, pooling, ...) alternate with GEMMs and serial glue.  With libgomp's
default wait policy an idle OpenMP thread spins for 300,000 rounds after every parallel region and
steals the cores the work needs: measured on 2 cores, conv2d (8,64,56,56) 0.32 s instead of
0.043 s, and 200 small kernels with 2 ms pauses between them 2-7.7 s instead of 0.47 s (provisional,
loaded machine, 2026-12-01).  libgomp reads ``OMP_WAIT_POLICY`` (and ``GOMP_SPINCOUNT``) once,
when it is loaded, and one copy serves the whole process: PyTorch's bundled ``libgomp.so.1`` has
the same soname, so after ``import torch`` our extensions use torch's copy, already initialised.

The scheme, the same whichever of torch and cnncore is imported first (so that the order cannot
change how fast either runs): libgomp has a documented rule, "if there are more OpenMP threads
than available CPUs, 1000 and 100 spins are used for OMP_WAIT_POLICY being ACTIVE or undefined"
(GOMP_SPINCOUNT in the libgomp manual), instead of 30 billion and 300,000.  A daemon thread runs
one parallel region of ``cpus + 1`` threads and stays alive, so its ``cpus`` pooled workers stay
docked, asleep, and libgomp always manages more threads than CPUs: every team, ours and torch's,
spins at most 100 rounds (about a microsecond) before sleeping.  There is no call to change the
policy of an initialised libgomp, and this needs none: it works the same when torch loaded
libgomp first.  The cost: ``cpus`` sleeping threads.  Earlier, cnncore imported first set
``OMP_WAIT_POLICY=PASSIVE`` instead and the throttle served only the torch-first order; beside a
busy process back-to-back kernels then ran 13% faster in the torch-first order.  With one scheme,
``python -m bench.import_order`` (7 rounds, quiet 2-core Zen 3, 2026-12-01) put torch first /
cnncore first at 0.99 and 1.02 quiet, 0.99 and 0.99 beside a busy process (with and without 2 ms
of glue between kernels).

``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set by the user: kept, nothing is done.
``throttle_thread()`` returns the daemon thread (None when the user's settings were kept).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

_THREAD_NAME = "cnncore-openmp-throttle"
_throttle: threading.Thread | None = None
# libgomp settings that, set by the user, turn the scheme off
USER_SETTINGS = frozenset({"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"})


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _hold_threads(run_region, threads: int, started: threading.Event) -> None:
    run_region(threads)
    started.set()
    threading.Event().wait()  # forever: the pooled workers live as long as this thread


def settle_wait_policy(environ: Mapping[str, str]) -> None:
    """Apply the scheme of this module's docstring once per process (after the import hook that
    finds ``cnncore_kernels._threads`` is installed)."""
    global _throttle
    if USER_SETTINGS.intersection(environ) or _throttle is not None:
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
