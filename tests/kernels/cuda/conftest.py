"""Fixtures of the CUDA tests.  Importing ``sim`` first turns Numba's simulator on (see there)."""

from __future__ import annotations

import sys

import pytest

from tests.kernels.cuda.sim import LAUNCH_CONFIGS, SMALL_TILES, launch_config, use_tiles


@pytest.fixture(autouse=True)
def fast_thread_switches():
    """The simulator's block runner polls its CUDA threads (Python threads) for syncthreads; with
    the default 5 ms GIL switch interval each barrier waits milliseconds.  A short interval makes
    the tests several times faster; it is restored after each test."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(2e-4)
    yield
    sys.setswitchinterval(old)


@pytest.fixture(autouse=True)
def small_gemm_tiles(monkeypatch):
    """Small SGEMM tiles (simulator speed); a test may switch to others with ``use_tiles``."""
    use_tiles(monkeypatch, SMALL_TILES)


@pytest.fixture(params=LAUNCH_CONFIGS, ids=[f"{t}x{b}" for t, b in LAUNCH_CONFIGS])
def launch(request):
    """Run the test under each 1-D launch configuration (threads per block, block cap)."""
    threads, blocks = request.param
    with launch_config(threads=threads, max_blocks=blocks):
        yield request.param


@pytest.fixture
def small_launch():
    """One cheap configuration, for the tests that vary something else."""
    with launch_config(threads=32, max_blocks=2):
        yield
