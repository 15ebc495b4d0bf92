"""The kernels' memory handler (cnncore_kernels.buffers, _buffers.pyx) and cnncore.memory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnncore
import cnncore.functional as F
from cnncore_kernels import _buffers, buffers

try:  # NumPy 2
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.26
    from numpy.core.multiarray import get_handler_name

MIB = 1 << 20
POOLED = 4 * MIB  # comfortably above the pooling threshold


@buffers.pooled
def allocate(make, *args, **kwargs):
    return make(*args, **kwargs)


def owner(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


@pytest.fixture
def limit():
    """Runs the test with the default limit and restores it (tests change it)."""
    keep = buffers.limit()
    buffers.release()
    yield keep
    buffers.set_limit(keep)


def test_only_allocations_inside_pooled_use_the_handler():
    inside = allocate(np.empty, POOLED, np.uint8)
    small = allocate(np.empty, 10, np.float32)
    outside = np.empty(POOLED, np.uint8)
    assert get_handler_name(inside) == get_handler_name(small) == buffers.NAME
    assert get_handler_name(outside) != buffers.NAME


def test_the_handler_is_restored_when_the_kernel_raises():
    @buffers.pooled
    def fails():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fails()
    assert get_handler_name(np.empty(POOLED, np.uint8)) != buffers.NAME


def test_other_threads_keep_their_handler():
    seen = []
    started, release = threading.Event(), threading.Event()

    @buffers.pooled
    def hold():
        started.set()
        release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    started.wait(10)
    seen.append(get_handler_name(np.empty(POOLED, np.uint8)))
    release.set()
    t.join()
    assert seen[0] != buffers.NAME


@pytest.mark.parametrize("nbytes", [1, 100, 64 * 1024, MIB - 64, MIB, 3 * MIB + 5, 9 * MIB + 1])
def test_arrays_start_on_cache_lines_and_hold_their_size(nbytes):
    a = allocate(np.empty, nbytes, np.uint8)
    assert a.ctypes.data % 64 == 0
    a[:] = 7  # every byte writable
    assert int(a.sum()) == 7 * nbytes


def test_a_freed_block_is_kept_and_reused(limit):
    a = allocate(np.empty, POOLED, np.uint8)
    address = a.ctypes.data
    before = buffers.stats()
    del a
    kept = buffers.stats()
    assert kept["kept_blocks"] == before["kept_blocks"] + 1
    assert kept["live_blocks"] == before["live_blocks"] - 1
    b = allocate(np.empty, POOLED, np.uint8)
    after = buffers.stats()
    assert b.ctypes.data == address
    assert after["hits"] == kept["hits"] + 1 and after["misses"] == kept["misses"]


def test_a_kept_block_serves_requests_down_to_half_its_size(limit):
    a = allocate(np.empty, 8 * MIB, np.uint8)  # a 10 MiB class (2 MiB steps, header included)
    address = a.ctypes.data
    del a
    too_small = allocate(np.empty, 3 * MIB, np.uint8)  # 3 MiB + 64 KiB: less than half
    assert too_small.ctypes.data != address
    smaller = allocate(np.empty, 6 * MIB, np.uint8)  # an 8 MiB class: the kept block fits
    assert smaller.ctypes.data == address
    smaller[:] = 1
    assert int(smaller.sum()) == 6 * MIB


def test_zeros_on_a_reused_block_are_zero(limit):
    a = allocate(np.empty, POOLED // 4, np.float32)
    a[:] = np.nan
    address = a.ctypes.data
    del a
    z = allocate(np.zeros, POOLED // 4, np.float32)
    assert z.ctypes.data == address
    assert not z.any()


def test_resize_keeps_the_contents(limit):
    a = allocate(np.arange, POOLED // 8, dtype=np.float64)
    a.resize(POOLED // 4, refcheck=False)  # through the handler's realloc
    assert (a[: POOLED // 8] == np.arange(POOLED // 8)).all()
    a.resize(10, refcheck=False)
    assert (a == np.arange(10)).all()


def test_the_limit_bounds_the_kept_bytes_oldest_out_first(limit):
    live = buffers.stats()["live_bytes"]  # other arrays of the handler (kept scratch buffers)
    blocks = [allocate(np.empty, POOLED, np.uint8) for _ in range(3)]
    addresses = [b.ctypes.data for b in blocks]
    mapped = (buffers.stats()["live_bytes"] - live) // 3
    buffers.set_limit(2 * mapped)
    while blocks:  # freed oldest first: the first one is unmapped again
        del blocks[0]
    s = buffers.stats()
    assert s["kept_blocks"] == 2 and s["kept_bytes"] <= 2 * mapped
    reused = [allocate(np.empty, POOLED, np.uint8) for _ in range(2)]
    assert {r.ctypes.data for r in reused} == set(addresses[1:])


def test_limit_zero_keeps_nothing_and_release_empties(limit):
    a = allocate(np.empty, POOLED, np.uint8)
    del a
    assert buffers.stats()["kept_blocks"] >= 1
    buffers.release()
    assert buffers.stats()["kept_bytes"] == 0 and buffers.limit() == limit
    buffers.set_limit(0)
    b = allocate(np.empty, POOLED, np.uint8)
    del b
    assert buffers.stats()["kept_bytes"] == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["new", "zeros", "resize", "free"]), st.integers(0, 6 * MIB)),
        min_size=1,
        max_size=25,
    ),
    st.sampled_from([0, 3 * MIB, 64 * MIB]),
)
def test_random_sequences_keep_contents_and_counts(steps, cap):
    keep = buffers.limit()
    buffers.set_limit(cap)
    try:
        live = []  # (array, the byte value it holds)
        base = buffers.stats()["live_blocks"]
        for i, (op, n) in enumerate(steps):
            value = i % 251 + 1
            if op in ("new", "zeros") or not live:
                a = allocate(np.zeros if op == "zeros" else np.empty, n, np.uint8)
                if op == "zeros":
                    assert not a.any()
                a[:] = value
                live.append((a, value))
            elif op == "resize":
                a, old = live.pop()
                keep_n = min(a.size, n)
                a.resize(n, refcheck=False)
                assert (a[:keep_n] == old).all()
                a[:] = value
                live.append((a, value))
            else:
                live.pop(n % len(live))
            for a, v in live:
                assert a.ctypes.data % 64 == 0 and (a.size == 0 or (a[0] == v and a[-1] == v))
            assert buffers.stats()["kept_bytes"] <= cap
        live.clear()
        a = None  # the last array too
        s = buffers.stats()
        assert s["live_blocks"] == base and s["foreign"] == 0
    finally:
        buffers.set_limit(keep)


def test_kernel_outputs_come_from_kept_blocks(limit):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 32, 32), dtype=np.float32)
    w = rng.standard_normal((64, 16, 3, 3), dtype=np.float32)
    y = F.conv2d(x, w, None, 1, 1)
    assert get_handler_name(owner(y)) == buffers.NAME
    ref = y.copy()
    address = y.ctypes.data
    del y
    y = F.conv2d(x, w, None, 1, 1)  # the same block again, the same result
    assert y.ctypes.data == address
    np.testing.assert_array_equal(y, ref)
    before = buffers.stats()["live_blocks"]
    for _ in range(3):
        F.conv2d_backward(np.ones_like(y), x, w, 1, 1, 1)
    assert buffers.stats()["live_blocks"] == before  # nothing leaks


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", None), ("0", 0), ("256", 256 * MIB), (" 8 ", 8 * MIB)],
)
def test_default_limit_from_the_environment(value, expected):
    got = buffers.default_limit({buffers.ENV: value} if value else {})
    if expected is None:
        assert 0 < got <= 1 << 30
    else:
        assert got == expected


@pytest.mark.parametrize("value", ["-1", "1.5", "lots", str(2**40 + 1), "9" * 30])
def test_bad_environment_values_are_refused(value):
    with pytest.raises(ValueError, match=buffers.ENV):
        buffers.default_limit({buffers.ENV: value})


def test_the_environment_sets_the_limit_at_import():
    code = "from cnncore_kernels import buffers; print(buffers.limit())"
    env = dict(os.environ, **{buffers.ENV: "3"})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == 3 * MIB


def test_public_api(limit):
    info = cnncore.memory.buffer_cache_info()
    assert set(info) == {
        "limit",
        "kept_bytes",
        "kept_blocks",
        "live_bytes",
        "live_blocks",
        "hits",
        "misses",
        "foreign",
    }
    cnncore.memory.set_buffer_cache_limit(5 * MIB)
    assert cnncore.memory.buffer_cache_info()["limit"] == 5 * MIB
    cnncore.memory.empty_buffer_cache()
    assert cnncore.memory.buffer_cache_info()["kept_bytes"] == 0
    with pytest.raises(ValueError, match="nbytes"):
        cnncore.memory.set_buffer_cache_limit(-1)
    with pytest.raises(TypeError, match="nbytes"):
        cnncore.memory.set_buffer_cache_limit(1.5)
    with pytest.raises(TypeError, match="nbytes"):
        cnncore.memory.set_buffer_cache_limit(True)


def test_the_module_constants():
    assert _buffers.POOL_MIN == MIB and _buffers.HEADER == 64


def test_an_allocation_too_large_raises_memory_error(limit):
    before = buffers.stats()["live_blocks"]
    with pytest.raises(MemoryError):
        allocate(np.empty, 1 << 46, np.uint8)  # 64 TiB: the mapping is refused
    assert buffers.stats()["live_blocks"] == before
