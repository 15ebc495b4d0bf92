"""`cnncore.dense` takes the patch size from the model, refuses clearly without one, and warns
about tiles whose halo dominates."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cnncore import dense, models, nn
from cnncore.dense.tiling import MAX_HALO_RATIO, tile_overhead


@pytest.fixture(scope="module")
def toy() -> nn.Sequential:
    nn.manual_seed(0)
    return models.toy15().eval()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).random((1, 3, 20, 23), dtype=np.float32)


@pytest.mark.parametrize("method", ["dsparse", "fcn", "patchwise"])
def test_predict_takes_patch_size_from_the_model(toy, image, method) -> None:
    assert toy.patch_size == 15
    got = dense.predict(toy, image, method=method)
    want = dense.predict(toy, image, 15, method=method)
    np.testing.assert_array_equal(got, want)


def test_converters_take_patch_size_from_the_model(toy, image) -> None:
    assert dense.to_dense(toy).plan == dense.to_dense(toy, 15).plan
    assert dense.to_fcn(toy).plan == dense.to_fcn(toy, 15).plan
    assert dense.block_predictor(toy).halo == dense.block_predictor(toy, 15).halo
    assert dense.analyze(toy) == dense.analyze(toy, 15)


def test_an_explicit_patch_size_wins_over_the_attribute(image) -> None:
    net = models.toy15().eval()
    net.patch_size = 999  # wrong on purpose: the argument must be used
    assert dense.analyze(net, 15).patch == (15, 15)
    with pytest.raises(ValueError, match="patch_size"):
        dense.analyze(net)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x: dense.predict(m, x),
        lambda m, x: dense.to_dense(m),
        lambda m, x: dense.to_fcn(m),
        lambda m, x: dense.block_predictor(m),
    ],
)
def test_no_patch_size_anywhere_is_refused(image, call) -> None:
    bare = nn.Sequential(nn.Conv2d(3, 2, 5))
    with pytest.raises(ValueError, match="patch_size is required.*Sequential"):
        call(bare, image)


def test_small_tile_warns_and_suggests_a_size(toy, image) -> None:
    with pytest.warns(UserWarning, match=r"tile=\(1, 1\).*use tile=(\d+)") as record:
        got = dense.predict(toy, image, tile=1)
    np.testing.assert_allclose(got, dense.predict(toy, image), rtol=1e-5, atol=1e-6)
    suggested = int(record[0].message.args[0].rsplit("tile=", 1)[1].split()[0])
    halo = dense.block_predictor(toy).halo
    # the suggested square tile keeps the halo within the tile's area (and the threshold)
    assert tile_overhead((10_000, 10_000), (suggested, suggested), halo) is None
    (t, b), (left, r) = halo
    eh, ew = t + b, left + r
    assert (suggested + eh) * (suggested + ew) - suggested**2 <= suggested**2
    assert (suggested - 1 + eh) * (suggested - 1 + ew) - (suggested - 1) ** 2 > (suggested - 1) ** 2


def test_reasonable_tiles_and_whole_images_do_not_warn(toy, image) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big = np.zeros((1, 3, 60, 60), dtype=np.float32)
        dense.predict(toy, big, tile=30)  # 30x30 tiles read 44x44 blocks: halo 1.2x the tile
        dense.predict(toy, image, tile=1000)  # one tile: nothing is repeated


def test_tile_overhead_threshold() -> None:
    halo = ((7, 7), (7, 7))
    # a 7x7 tile reads 21x21: halo 392 = 8x the tile's 49 pixels
    ratio, _ = tile_overhead((100, 100), (7, 7), halo)
    assert ratio == pytest.approx(8.0)
    assert tile_overhead((100, 100), (20, 20), halo) is None  # 34^2 - 400 = 756 < 4 * 400
    assert tile_overhead((5, 5), (7, 7), halo) is None  # the image fits in one tile
    assert MAX_HALO_RATIO == 4


def test_dense_does_not_import_distributed_at_module_level() -> None:
    import subprocess
    import sys

    code = (
        "import sys, cnncore.dense\n"
        "print(sorted(m for m in sys.modules if m.startswith(('cnncore.distributed', 'dask'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_dask_image_takes_patch_size_from_the_model_too(toy, image) -> None:
    da = pytest.importorskip("dask.array", reason="Dask is the optional [distributed] extra")
    lazy = dense.predict(toy, da.from_array(image, chunks=(1, 3, 10, 12)))
    assert lazy.chunks[2:] == ((10, 10), (12, 11))
    np.testing.assert_allclose(lazy.compute(), dense.predict(toy, image), rtol=1e-5, atol=1e-6)
