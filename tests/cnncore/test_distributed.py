"""cnncore.distributed: chunked prediction on Dask equals single-machine ``predict``.

A two-process ``LocalCluster`` (module fixture) runs the tiled prediction, the Zarr round trip,
many files, and a computation during which a worker process dies.  Graph-level checks (the
network is one key; chunks keep their size; bad input) use the synchronous scheduler.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys

import dask
import dask.array as da
import distributed
import numpy as np
import pytest
import zarr

from cnncore import dense, models, nn
from cnncore.distributed import is_dask_array, predict_dask, predict_files, predict_zarr, share

# Dask, distributed and zarr are in the [test] extra: a missing one is an error here, not a skip.


# -- models and references ---------------------------------------------------------------------
def small_net(patch: int, dtype=np.float64) -> nn.Sequential:
    """A convertible patch classifier whose halo is asymmetric: patch 12 gives (5, 6) (receptive
    field 12), patch 13 gives (6, 5) (receptive field 12 < patch: the last row is never read)."""
    rng = np.random.default_rng(patch)
    m = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),
        nn.Conv2d(4, 5, 2),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),
        nn.Flatten(),
        nn.Linear(20, 3),
    )
    for p in m.parameters():
        p.data = rng.standard_normal(p.data.shape).astype(dtype)
    return m.eval()


def toy(dtype=np.float32) -> nn.Sequential:
    m = models.toy15()
    rng = np.random.default_rng(15)
    for p in m.parameters():
        p.data = rng.standard_normal(p.data.shape).astype(dtype)
    return m.eval()


def image(shape, dtype=np.float32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_close(out, ref) -> None:
    """Equal to float rounding: the chunks' matrices have other widths than the whole image's,
    and BLAS sums in an order that depends on them."""
    eps = np.finfo(ref.dtype).eps
    np.testing.assert_allclose(out, ref, rtol=64 * eps, atol=64 * eps * np.abs(ref).max())


# -- the cluster -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def die_once(block, marker, block_info=None):
    """Identity, except that the first task of chunk (0, 0, 1, 1) kills its worker process (after
    writing the process id into ``marker``)."""
    if block_info[0]["chunk-location"] == (0, 0, 1, 1):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return block
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(1)
    return block


# -- on the cluster ----------------------------------------------------------------------------
def test_tiled_equals_predict(client):
    """An image of 3 x 3 chunks on two worker processes, the network scattered to both: the
    scores of ``predict`` on the whole image, and bit for bit those of ``predict`` with the same
    tiles run on a worker (same blocks, same BLAS threads)."""
    model = toy()
    x = image((1, 3, 48, 60), seed=1)
    scores = predict_dask(model, da.from_array(x, chunks=(1, 3, 16, 20)), 15, client=client)
    holders = [w for k, w in client.who_has().items() if str(k).startswith("BlockPredictor")]
    assert len(holders) == 1 and len(holders[0]) == 2, client.who_has()
    assert scores.chunks == ((1,), (2,), (16, 16, 16), (20, 20, 20))
    out = scores.compute()
    assert_close(out, dense.predict(model, x, 15))
    same_tiles = client.submit(dense.predict, model, x, 15, tile=(16, 20), pure=False)
    np.testing.assert_array_equal(out, same_tiles.result())


def test_zarr_round_trip(client, tmp_path):
    model = small_net(13)
    x = image((1, 3, 32, 35), np.float64, seed=4)
    src = zarr.create(
        shape=x.shape, chunks=(1, 3, 16, 20), dtype=x.dtype, store=str(tmp_path / "in")
    )
    src[...] = x
    out = predict_zarr(model, str(tmp_path / "in"), str(tmp_path / "out"), 13, client=client)
    back = zarr.open_array(str(tmp_path / "out"), mode="r")
    assert out.shape == back.shape == (1, 3, 32, 35) and back.chunks == (1, 3, 16, 20)
    assert_close(back[...], dense.predict(model, x, 13))
    with pytest.raises(Exception, match="out"):  # an existing target is not overwritten
        predict_zarr(model, str(tmp_path / "in"), str(tmp_path / "out"), 13, client=client)


def test_files(client, tmp_path):
    model = toy()
    (tmp_path / "in").mkdir()
    a, b = image((3, 40, 50), seed=5), image((2, 3, 24, 30), seed=6)
    np.save(tmp_path / "in" / "a.npy", a)
    np.save(tmp_path / "in" / "b.npy", b)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    out = predict_files(model, tmp_path / "in", tmp_path / "out", 15, tile=(16, 16), client=client)
    assert [p.name for p in out] == ["a_scores.npy", "b_scores.npy"]
    assert_close(np.load(out[0]), dense.predict(model, a[None], 15)[0])
    assert_close(np.load(out[1]), dense.predict(model, b, 15))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_scores.npy", "b_scores.npy"]
    with pytest.raises(FileExistsError, match="a_scores"):
        predict_files(model, tmp_path / "in", tmp_path / "out", 15, client=client)


def test_worker_killed_during_computation(client, tmp_path):
    """A worker process dies in the middle (last of the cluster tests: the nanny replaces it in
    the background); the scheduler reruns what it held (scores, the network) elsewhere."""
    model = toy()
    x = image((1, 3, 40, 50), seed=3)
    marker = tmp_path / "killed"
    before = set(client.run(os.getpid).values())
    scores = predict_dask(model, da.from_array(x, chunks=(1, 3, 16, 20)), 15)
    out = scores.map_blocks(die_once, str(marker), meta=scores._meta).compute()
    killed = int(marker.read_text())
    assert killed in before and killed not in set(client.run(os.getpid).values())
    assert_close(out, dense.predict(model, x, 15))


# -- graph and local checks (synchronous scheduler) --------------------------------------------
def test_network_is_one_key_of_the_graph():
    """The weights are in the graph once; the chunk tasks only name their key."""
    model = models.pixel65()
    weight_bytes = sum(p.data.nbytes for p in model.parameters())
    X = da.zeros((1, 3, 256, 256), dtype=np.float32, chunks=(1, 3, 64, 64))
    graph = dict(predict_dask(model, X, 65).__dask_graph__())
    sizes = sorted(len(pickle.dumps(task)) for task in graph.values())
    assert sizes[-1] > weight_bytes  # the network
    assert sizes[-2] < weight_bytes / 100  # everything else: 16 chunks and their overlaps
    ref = share(dense.block_predictor(model, 65))
    assert len(ref.__dask_graph__()) == 1


@pytest.mark.parametrize(
    "chunks, tile, method",
    [
        ((1, 3, 16, 20), None, "dsparse"),  # uneven: (16, 14) x (20, 15)
        ((2, 3, 5, 7), None, "dsparse"),  # chunks smaller than the halo (6, 5): merged, then back
        ((1, 1, 16, 20), None, "dsparse"),  # channels split over chunks
        ((1, 3, 16, 20), (6, 7), "dsparse"),  # tiles inside each chunk
        ((1, 3, 16, 20), None, "fcn"),
    ],
)
@pytest.mark.parametrize("patch", [12, 13])
def test_chunks_tiles_methods(chunks, tile, method, patch):
    """The asymmetric halos (5, 6) and (6, 5) of the small nets, exactly cut from Dask's
    symmetric overlap, against ``predict`` on the whole image (float64)."""
    model = small_net(patch)
    x = image((2, 3, 30, 35), np.float64, seed=7)
    X = da.from_array(x, chunks=chunks)
    scores = predict_dask(model, X, patch, method, tile)
    assert scores.chunks == (X.chunks[0], (3,), X.chunks[2], X.chunks[3])
    assert_close(scores.compute(scheduler="sync"), dense.predict(model, x, patch))


def test_image_smaller_than_the_halo():
    """Axes shorter than the overlap depth (6 for patch 13), which Dask cannot overlap."""
    model = small_net(13)
    x = image((2, 3, 4, 30), np.float64, seed=10)
    X = da.from_array(x, chunks=(1, 3, 2, 10))
    scores = predict_dask(model, X, 13)
    assert scores.chunks == ((1, 1), (3,), (2, 2), (10, 10, 10))
    assert_close(scores.compute(scheduler="sync"), dense.predict(model, x, 13))
    assert_close(
        predict_dask(model, X[:, :, :, :5], 13).compute(scheduler="sync"),
        dense.predict(model, x[:, :, :, :5], 13),
    )


def test_dense_predict_dispatches_dask_arrays():
    """``cnncore.dense.predict`` on a Dask array returns the lazy scores of ``predict_dask``."""
    model = small_net(12)
    x = image((1, 3, 30, 35), np.float64, seed=9)
    X = da.from_array(x, chunks=(1, 3, 16, 20))
    scores = dense.predict(model, X, 12, tile=(8, 8))
    assert is_dask_array(scores) and scores.chunks == ((1,), (3,), (16, 14), (20, 15))
    assert_close(scores.compute(scheduler="sync"), dense.predict(model, x, 12))


def test_one_image_zarr_without_client(tmp_path):
    model = small_net(12)
    x = image((3, 33, 41), np.float64, seed=8)
    zarr.create(shape=x.shape, chunks=(3, 33, 41), dtype=x.dtype, store=str(tmp_path / "i"))[
        ...
    ] = x
    with dask.config.set(scheduler="sync"):
        out = predict_zarr(model, str(tmp_path / "i"), str(tmp_path / "o"), 12, chunks=(16, 16))
    assert out.shape == (3, 33, 41) and out.chunks == (3, 16, 16)
    assert_close(out[...], dense.predict(model, x[None], 12)[0])


def test_bad_input():
    model = toy()
    X = da.zeros((1, 3, 20, 20), dtype=np.float32, chunks=(1, 3, 10, 10))
    with pytest.raises(TypeError, match="dask.array.Array"):
        predict_dask(model, np.zeros((1, 3, 20, 20), np.float32), 15)
    with pytest.raises(ValueError, match=r"4 dimensions.*\(3, 20, 20\)"):
        predict_dask(model, X[0], 15)
    with pytest.raises(ValueError, match=r"3 channels.*\(1, 2, 20, 20\)"):
        predict_dask(model, X[:, :2], 15)
    with pytest.raises(TypeError, match="float32 or float64"):
        predict_dask(model, X.astype(np.float16), 15)
    with pytest.raises(TypeError, match="does not match parameter"):
        predict_dask(model, X.astype(np.float64), 15)
    with pytest.raises(ValueError, match="method"):
        predict_dask(model, X, 15, method="nope")
    with pytest.raises(ValueError, match="tile"):
        predict_dask(model, X, 15, tile=0)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        predict_dask(model, X[X[:, 0, 0, 0] > 0], 15)
    with pytest.raises(ValueError, match="no file matching"):
        predict_files(model, os.path.dirname(__file__), "/nonexistent", 15, pattern="*.none")


def test_imports_no_dask_and_says_how_to_install(tmp_path):
    code = (
        "import sys, cnncore, cnncore.dense, cnncore.distributed, cnncore.models\n"
        "extras = ('dask', 'distributed', 'zarr')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in extras]\n"
        "sys.modules['dask'] = None\n"
        "try:\n"
        "    model = cnncore.models.toy15()\n"
        "    cnncore.distributed.predict_files(model, [__file__], sys.argv[1], 15)\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    script = tmp_path / "probe.py"
    script.write_text(code)
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert "pip install 'cnncore[distributed]'" in run.stdout
