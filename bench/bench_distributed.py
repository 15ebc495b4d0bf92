"""Dense prediction on Dask: throughput (megapixels/s) of ``pixel65`` on an S x S image, in tiles
(chunks) of T x T pixels.  Rows, in this order (group ``distributed pixel65 SxS tile T``):

- ``plain``: ``cnncore.dense.predict(model, x, 65, tile=T)`` in this process (BLAS on 2 threads);
- ``dask_sync``: ``predict_dask`` on ``da.from_array(x, chunks=T)`` with Dask's synchronous
  scheduler in this process, the same tiles.  Each round is preceded (untimed by the benchmark,
  timed by hand) by a run of ``plain``, so the two alternate and drift of a shared machine hits
  both: ``overhead`` in ``extra_info`` is ``min(dask_sync) / min(plain of these pairs) - 1``,
  Dask's cost (target < 15%);
- ``cluster``: a ``LocalCluster`` of two worker processes (one thread each; Dask's nanny gives
  each worker one BLAS thread), reading the image from a Zarr store and sending the scores back
  to this process: ``speedup`` in ``extra_info`` is against ``plain`` (one process);
- ``torch_dsparse``: the peer, PyTorch CPU (2 threads) running the same d-sparse network on the
  same tiles (``bench.dense_peers.torch_dense``).

The target size (4096 x 4096, tiles of 1024) takes minutes per row on 2 cores, so the default
is smaller; choose with ``CNNCORE_BENCH_DIST_SIZE`` (default 512), ``CNNCORE_BENCH_DIST_TILE``
(default 256) and ``CNNCORE_BENCH_DIST_ROUNDS`` (default 1), e.g.
``CNNCORE_BENCH_DIST_SIZE=4096 CNNCORE_BENCH_DIST_TILE=1024 pytest bench/bench_distributed.py
--benchmark-only``.  A summary (megapixels/s, overhead, speedup) is printed at the end.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from typing import Any

import numpy as np
import pytest

from cnncore import dense, models
from cnncore.dense.tiling import tiles, window

SIZE = int(os.environ.get("CNNCORE_BENCH_DIST_SIZE", "512"))
TILE = int(os.environ.get("CNNCORE_BENCH_DIST_TILE", "256"))
ROUNDS = int(os.environ.get("CNNCORE_BENCH_DIST_ROUNDS", "1"))
IMPLS = ("plain", "dask_sync", "cluster", "torch_dsparse")
GROUP = f"distributed pixel65 {SIZE}x{SIZE} tile {TILE}"
_SECONDS: dict[str, float] = {}
_PAIRED_PLAIN: list[float] = []  # plain runs interleaved with the dask_sync rounds
_PLAIN: list[np.ndarray] = []  # the scores of ``plain``: every row must give the same


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    model = models.pixel65().eval()
    x = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)
    return {"model": model, "x": x}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Any:
    """A two-process LocalCluster (workers warmed up: cnncore and zarr imported) and the image in
    a Zarr store on disk, chunked in tiles."""
    distributed = pytest.importorskip("distributed", reason="needs the [distributed] extra")
    zarr = pytest.importorskip("zarr", reason="needs the [distributed] extra")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as lc:
        with distributed.Client(lc) as client:
            for mod in ("cnncore.dense", "cnncore.distributed", "zarr"):
                client.run(importlib.import_module, mod)
            yield client, zarr, tmp_path_factory.mktemp("zarr")


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    """After the module: megapixels/s of each row, Dask's overhead and the cluster's speedup."""
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capman is None or not _SECONDS:
        return
    mpix = SIZE * SIZE / 1e6
    lines = [f"{GROUP}: megapixels/s (seconds, fastest of {ROUNDS} round(s))"]
    for impl in IMPLS:
        if impl in _SECONDS:
            lines.append(f"  {impl:14s} {mpix / _SECONDS[impl]:9.4f}  ({_SECONDS[impl]:.2f} s)")
    plain = _SECONDS.get("plain")
    if _PAIRED_PLAIN and "dask_sync" in _SECONDS:
        over = _SECONDS["dask_sync"] / min(_PAIRED_PLAIN) - 1
        lines.append(
            f"  Dask overhead (dask_sync / plain, interleaved, {len(_PAIRED_PLAIN)} pair(s)): "
            f"{over:+.1%} (plain {min(_PAIRED_PLAIN):.2f} s)"
        )
    if plain and "cluster" in _SECONDS:
        lines.append(
            f"  two-worker cluster speedup (plain / cluster): x{plain / _SECONDS['cluster']:.2f}"
        )
    if plain and "torch_dsparse" in _SECONDS:
        lines.append(
            f"  plain against PyTorch (torch / plain): x{_SECONDS['torch_dsparse'] / plain:.2f}"
        )
    with capman.global_and_fixture_disabled():
        tr.write_line("")
        for line in lines:
            tr.write_line(line)


def _runner(impl: str, setup: dict[str, Any], request: pytest.FixtureRequest):
    model, x = setup["model"], setup["x"]
    if impl == "plain":
        return lambda: dense.predict(model, x, 65, tile=TILE)
    if impl == "dask_sync":
        da = pytest.importorskip("dask.array", reason="needs the [distributed] extra")
        from cnncore.distributed import predict_dask

        X = da.from_array(x, chunks=(1, 3, TILE, TILE))
        return lambda: predict_dask(model, X, 65).compute(scheduler="sync")
    if impl == "cluster":
        client, zarr, folder = request.getfixturevalue("cluster")
        import dask.array as da

        from cnncore.distributed import predict_dask

        path = str(folder / f"image{SIZE}")
        z = zarr.create(shape=x.shape, chunks=(1, 3, TILE, TILE), dtype=x.dtype, store=path)
        z[...] = x
        return lambda: predict_dask(model, da.from_zarr(path), 65).compute()
    torch = request.getfixturevalue("torch_peer")
    plan = dense.analyze(model, 65)
    (top, bottom), (left, right) = plan.halo("dsparse")
    net = torch_block_net(torch, model, 65)

    def run():
        out = np.empty((1, plan.num_classes, SIZE, SIZE), dtype=np.float32)
        with torch.no_grad():
            for r0, r1, c0, c1 in tiles((SIZE, SIZE), (TILE, TILE)):
                block = window(x, (r0 - top, r1 + bottom), (c0 - left, c1 + right))
                out[:, :, r0:r1, c0:c1] = net(torch.from_numpy(block)).numpy()
        return out

    return run


def torch_block_net(torch: Any, model: Any, patch: int):
    """``f(block) -> scores``: the layers of ``to_dense(model, patch)`` as PyTorch CPU ops, on a
    block that holds its halo (what ``predict(tile=...)`` hands each tile to)."""
    F = torch.nn.functional
    ops = []
    for name, m in dense.to_dense(model, patch).named_children():
        kind = type(m).__name__
        if kind == "SharedConv":
            w = torch.from_numpy(np.ascontiguousarray(m.weight.data.reshape(m.shape)))
            b = None if m.bias is None else torch.from_numpy(m.bias.data)
            ops.append(lambda t, w=w, b=b, d=m.dilation: F.conv2d(t, w, b, 1, 0, d))
        elif kind == "MaxPool2d":
            ops.append(lambda t, k=m.kernel_size, d=m.dilation: F.max_pool2d(t, k, 1, 0, d))
        elif kind == "ReLU":
            ops.append(lambda t: F.relu(t, inplace=True))
        else:
            raise NotImplementedError(f"no PyTorch twin for layer {name!r} ({kind})")

    def run(t):
        for op in ops:
            t = op(t)
        return t

    return run


@pytest.mark.parametrize("impl", IMPLS)
def test_distributed(benchmark, request, setup, impl):
    run = _runner(impl, setup, request)
    benchmark.group = GROUP
    setup_round = None
    if impl == "dask_sync":
        plain = _runner("plain", setup, request)

        def setup_round():
            t = time.perf_counter()
            plain()
            _PAIRED_PLAIN.append(time.perf_counter() - t)

    result = benchmark.pedantic(
        run, setup=setup_round, rounds=ROUNDS, iterations=1, warmup_rounds=0
    )
    assert result.shape == (1, 2, SIZE, SIZE)
    if impl == "plain":
        _PLAIN.append(result)
    elif _PLAIN:
        ref = _PLAIN[0]
        np.testing.assert_allclose(result, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    seconds = benchmark.stats.stats.min
    _SECONDS[impl] = seconds
    info = {"megapixels_per_s": SIZE * SIZE / 1e6 / seconds, "size": SIZE, "tile": TILE}
    if impl == "dask_sync":
        info["paired_plain_s"] = min(_PAIRED_PLAIN)
        info["overhead"] = seconds / min(_PAIRED_PLAIN) - 1
    if impl == "cluster" and "plain" in _SECONDS:
        info["speedup"] = _SECONDS["plain"] / seconds
    benchmark.extra_info.update(info)
