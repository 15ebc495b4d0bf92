"""Smoke test of an installed cnncore (a wheel in a fresh environment, no test extras).

    cd /somewhere/outside/the/checkout && python /path/to/tests/smoke_installed.py [--repo DIR]

Imports every module of ``cnncore`` and ``cnncore_kernels`` (modules that need an optional
dependency that is not installed, numba for the CUDA twins, dask/zarr for ``distributed`` and
torch for ``to_torch``'s layers, are listed as skipped; any other ImportError fails), then runs
tiny versions of the main paths against NumPy float64 references: conv2d, max_pool2d with
indices, the reuse of a freed output block, ``dense.predict`` of ``models.toy15`` against patch
scanning, ``cnncore.summary``, a training step (nn + optim.SGD + CrossEntropyLoss) and a
checkpoint round trip.  Shapes are tiny so that it also runs under an emulated CPU
(``qemu-x86_64 -cpu Haswell``) in seconds to minutes.
Not collected by pytest (no ``test_`` prefix): it must import the installed package, not the
checkout.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import pkgutil
import sys
import tempfile

OPTIONAL = {"numba", "dask", "distributed", "zarr", "torch"}


def import_everything() -> list[str]:
    """Import every module of both packages; return the skipped ones (missing optional deps)."""
    skipped = []
    for top in ("cnncore", "cnncore_kernels"):
        package = importlib.import_module(top)
        names = [top] + [
            m.name for m in pkgutil.walk_packages(package.__path__, top + ".", onerror=print)
        ]
        for name in names:
            try:
                importlib.import_module(name)
            except ImportError as err:
                missing = (err.name or "").split(".")[0]
                if missing in OPTIONAL and importlib.util.find_spec(missing) is None:
                    skipped.append(f"{name} (needs {missing})")
                    continue
                raise
    for needed in ("cnncore.dense", "cnncore.models", "cnncore.distributed", "cnncore.nn"):
        assert needed in sys.modules, f"{needed} was not found in the installed package"
    return skipped


def check_conv_and_pool(np) -> None:
    from cnncore.functional import conv2d, max_pool2d

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y = conv2d(x, w, padding=1)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))
    ref = np.einsum("nchwij,kcij->nkhw", windows, w.astype(np.float64))
    assert y.shape == (2, 4, 8, 8) and y.dtype == np.float32, (y.shape, y.dtype)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)

    p, idx = max_pool2d(y, 2)  # values and torch-style flat indices into each (H, W) plane
    ref_p = ref.reshape(2, 4, 4, 2, 4, 2).max(axis=(3, 5))
    np.testing.assert_allclose(p, ref_p, rtol=1e-4, atol=1e-4)
    flat = y.reshape(2, 4, -1)
    picked = np.take_along_axis(flat, idx.reshape(2, 4, -1), 2)
    np.testing.assert_array_equal(picked, p.reshape(2, 4, -1))


def check_kept_memory(np) -> None:
    from cnncore import memory
    from cnncore.functional import conv2d

    x = np.ones((1, 3, 128, 128), np.float32)
    w = np.ones((16, 3, 3, 3), np.float32)  # a 1 MiB output: a mapped block
    first = conv2d(x, w, padding=1)
    ref = first.copy()
    del first
    before = memory.buffer_cache_info()
    second = conv2d(x, w, padding=1)
    after = memory.buffer_cache_info()
    assert after["hits"] > before["hits"], (before, after)  # the freed output block came back
    np.testing.assert_array_equal(second, ref)


def check_dense_and_summary(np) -> None:
    from cnncore import dense, models, summary

    net = models.toy15().eval()
    rows = summary(net)
    assert [r["name"] for r in rows][:2] == ["conv1", "relu1"], rows
    image = np.random.default_rng(1).standard_normal((1, 3, 12, 12)).astype(np.float32)
    scores = dense.predict(net, image, 15)
    assert scores.shape == (1, 2, 12, 12), scores.shape
    scanned = dense.predict(net, image, 15, method="patchwise")
    np.testing.assert_allclose(scores, scanned, rtol=1e-4, atol=1e-5)


def check_training_and_checkpoint(np, folder: str) -> None:
    from cnncore import nn
    from cnncore.checkpoint import load_checkpoint, save_checkpoint
    from cnncore.optim import SGD

    def make():
        nn.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * 3 * 3, 3),
        )

    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    model, loss = make(), nn.CrossEntropyLoss()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = [p.data.copy() for p in model.parameters()]
    values = []
    for _ in range(5):
        opt.zero_grad()
        values.append(float(loss(model(x), y)))
        model.backward(loss.backward())
        opt.step()
    assert all(np.isfinite(values)) and values[-1] < values[0], values
    params = list(model.parameters())
    assert any(not np.array_equal(b, p.data) for b, p in zip(before, params, strict=True))

    path = os.path.join(folder, "smoke.npz")
    save_checkpoint(path, model, opt, epoch=5)
    restored = make()
    opt2 = SGD(restored.parameters(), lr=0.1, momentum=0.9)
    info = load_checkpoint(path, restored, opt2)
    assert info["epoch"] == 5, info
    state, loaded = model.state_dict(), restored.state_dict()
    assert list(state) == list(loaded), (list(state), list(loaded))
    for k in state:
        np.testing.assert_array_equal(state[k], loaded[k], err_msg=k)
    with nn.no_grad():
        np.testing.assert_array_equal(model.eval()(x), restored.eval()(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", help="the checkout: fail if cnncore is imported from inside it")
    ap.add_argument("--expect-isa", help="fail unless the kernels load this build (e.g. baseline)")
    args = ap.parse_args()
    # Python puts this script's folder first on sys.path, and tests/cnncore would shadow the
    # installed package: drop it.
    here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != here]
    import numpy as np

    import cnncore
    import cnncore_kernels
    from cnncore_kernels import isa

    where = [os.path.dirname(os.path.abspath(m.__file__)) for m in (cnncore, cnncore_kernels)]
    if args.repo:
        repo = os.path.realpath(args.repo)
        inside = [w for w in where if os.path.realpath(w).startswith(repo + os.sep)]
        assert not inside, f"imported from the checkout, not the installed package: {inside}"
    print(f"cnncore {cnncore.__version__} from {where[0]}; kernels {isa.info()}")
    if args.expect_isa:
        selected = isa.info()["selected"]
        assert selected == args.expect_isa, f"kernels load {selected}, not {args.expect_isa}"
    skipped = import_everything()
    print("imported every module" + (f"; skipped {skipped}" if skipped else ""))
    check_conv_and_pool(np)
    print("conv2d and max_pool2d with indices: ok")
    check_kept_memory(np)
    print("kernel outputs reuse kept memory: ok")
    check_dense_and_summary(np)
    print("dense.predict(toy15) == patch scanning, summary: ok")
    with tempfile.TemporaryDirectory() as folder:
        check_training_and_checkpoint(np, folder)
    print("training step and checkpoint round trip: ok")


if __name__ == "__main__":
    main()
