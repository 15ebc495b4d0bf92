"""Dense pixelwise classification: d-sparse and FCN against patch scanning and against PyTorch.

For ``pixel65`` and ``toy15`` on N x N images (N = 256 and 512 by default, set by
``CNNCORE_BENCH_DENSE_SIZES``, e.g. ``256,512,1024``; select with ``-k``), forward
(``predict``) and masked backward (forward + backward of the whole network with the error mask;
its cost does not depend on how many pixels count), four methods per (network, size, pass):

- ``patchwise``: patch scanning (``cnncore.dense.patchwise.scan_patches``, bounded batches), timed
  on a random sample of pixels and **scaled linearly** to the whole image (``timed_pixels`` <
  ``pixels`` in ``extra_info`` says so);
- ``torch_dsparse``: the same d-sparse network written with PyTorch CPU ops (``conv2d`` and
  ``max_pool2d`` with dilation, 2 threads), the peer;
- ``fcn``: shift and stitch over the S x S shifts; ``dsparse``: the d-sparse network.

Run in that order, so the FCN and d-sparse rows carry in ``extra_info`` the measured speedup over
patch scanning beside the theoretical one (``cnncore.dense.cost`` on that image size), the fraction
of the theory reached (target >= 0.7) and the ratio to PyTorch (target >= 1.0); a table is printed
at the end.  ``test_peak_memory`` runs ``predict`` in a subprocess and reports its peak RSS with and
without tiles (1024 and 2048; 4096 x 4096 with ``CNNCORE_BENCH_DENSE_MEMORY_4096=1``);
``python bench/bench_dense.py SIZE [TILE]`` does one such run by hand.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest

from cnncore import dense, models
from cnncore.dense.patchwise import default_batch_size, scan_patches
from cnncore.dense.tiling import block_ranges, window
from cnncore.nn import no_grad

NETWORKS = ("toy15", "pixel65")
# image sizes: 1024 takes minutes per row on 2 cores, so it is opt-in, e.g.
# CNNCORE_BENCH_DENSE_SIZES=256,512,1024 pytest bench/bench_dense.py --benchmark-only
SIZES = tuple(int(v) for v in os.environ.get("CNNCORE_BENCH_DENSE_SIZES", "256,512").split(","))
METHODS = ("patchwise", "torch_dsparse", "fcn", "dsparse")
PASSES = ("forward", "backward")
PATCH_BUDGET = 3.0  # seconds of patch scanning per measurement (then scaled)
_SECONDS: dict[tuple, float] = {}  # (network, size, pass, method) -> seconds for the whole image
_ROWS: list[dict[str, Any]] = []


def build(network: str):
    return {"pixel65": models.pixel65, "toy15": models.toy15}[network]().eval()


def image(size: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)


def mask_grad(shape: tuple[int, ...], fraction: float = 0.01) -> np.ndarray:
    """A masked score gradient: random values on ``fraction`` of the pixels, zero elsewhere."""
    rng = np.random.default_rng(1)
    dy = rng.standard_normal(shape, dtype=np.float32)
    dy *= rng.random((shape[0], 1, *shape[2:])) < fraction
    return dy


# -- PyTorch twin of the d-sparse network ---------------------------------------------------------
def torch_dense(torch: Any, plan: dense.Plan, inplace: bool, params: list | None = None):
    """``f(x) -> scores``: the d-sparse network of ``plan`` as PyTorch ops (same weights;
    ``params``: the ``(weight, bias)`` tensors of the conv/linear stages, default: the model's)."""
    F = torch.nn.functional
    weighted = [st for st in plan.dense_stages if st.kind in ("conv", "linear")]
    if params is None:
        params = [
            (
                torch.from_numpy(st.module.weight.data),
                None if st.module.bias is None else torch.from_numpy(st.module.bias.data),
            )
            for st in weighted
        ]
    wb = dict(zip((st.name for st in weighted), params, strict=True))
    ops = []
    for st in plan.dense_stages:
        d = st.dense_dilation
        if st.kind in ("conv", "linear"):
            w, b = wb[st.name]
            ops.append(
                lambda x, w=w, b=b, s=st.weight_shape, d=d: F.conv2d(x, w.reshape(s), b, 1, 0, d)
            )
        elif st.kind == "maxpool":
            ops.append(lambda x, k=st.kernel, d=d: F.max_pool2d(x, k, 1, 0, d))
        elif type(st.module).__name__ == "ReLU":
            ops.append(lambda x: F.relu(x, inplace=inplace))
        else:
            raise NotImplementedError(f"no PyTorch twin for {st.name} ({st.kind})")
    (top, bottom), (left, right) = plan.halo("dsparse")

    def run(x):
        x = F.pad(x, (left, right, top, bottom))
        for op in ops:
            x = op(x)
        return x

    return run


# -- the measurements: each returns seconds for the whole image (and extra info) ----------------
def patchwise_case(model, plan, x, pss):
    hw = x.shape[2:]
    block = window(x, *block_ranges(hw, plan.halo("patchwise")))
    bs = default_batch_size(plan, x.dtype.itemsize)
    n_pix = x.shape[0] * hw[0] * hw[1]
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(block, plan.patch, axis=(2, 3))

    def run(pixels):
        if pss == "forward":
            with no_grad():
                scan_patches(model, block, hw, plan, bs, pixels)
            return
        for start in range(0, pixels.size, bs):  # the batches of scan_patches, each with backward
            n, rest = np.divmod(pixels[start : start + bs], hw[0] * hw[1])
            i, j = np.divmod(rest, hw[1])
            s = model(win[n, :, i, j])
            model.backward(np.ones_like(s))

    rng = np.random.default_rng(2)
    probe = rng.choice(n_pix, size=min(bs, n_pix), replace=False)
    t0 = time.perf_counter()
    run(probe)
    per_pixel = (time.perf_counter() - t0) / probe.size
    n = int(min(n_pix, max(bs, PATCH_BUDGET / per_pixel // bs * bs)))
    pixels = np.sort(rng.choice(n_pix, size=n, replace=False))
    return (lambda: run(pixels)), n_pix / n, {"timed_pixels": n}


def dense_case(model, plan, x, pss, method, torch=None):
    if method == "torch_dsparse":
        tx = torch.from_numpy(x)
        if pss == "forward":
            f = torch_dense(torch, plan, inplace=True)

            def run():
                with torch.no_grad():
                    f(tx)
        else:
            weighted = [st.module for st in plan.dense_stages if st.kind in ("conv", "linear")]
            pairs = [
                (
                    torch.from_numpy(m.weight.data).requires_grad_(True),
                    None if m.bias is None else torch.from_numpy(m.bias.data).requires_grad_(True),
                )
                for m in weighted
            ]
            leaves = [t for pair in pairs for t in pair if t is not None]
            f = torch_dense(torch, plan, inplace=False, params=pairs)
            dy = torch.from_numpy(mask_grad((1, plan.num_classes, *x.shape[2:])))

            def run():
                torch.autograd.grad(f(tx), leaves, dy)

        return run
    if method == "dsparse":
        if pss == "forward":
            return lambda: dense.predict(model, x, plan.patch, "dsparse")
        net = dense.to_dense(model, plan.patch)
        dy = mask_grad((1, plan.num_classes, *x.shape[2:]))

        def step():
            net.forward(x)
            net.backward(dy)
            model.zero_grad()

        return step
    # fcn
    if pss == "forward":
        return lambda: dense.predict(model, x, plan.patch, "fcn")
    net = dense.to_fcn(model, plan.patch)
    hw = x.shape[2:]
    block = window(x, *block_ranges(hw, plan.halo("fcn")))
    from cnncore.nn import Sequential

    def passes():  # every shift: forward and backward (the gradient of the stitched scores)
        for a in range(min(plan.stride[0], hw[0])):
            for b in range(min(plan.stride[1], hw[1])):
                y = net.forward_valid(block[:, :, a:, b:])
                Sequential.backward(net, np.ones_like(y))
        model.zero_grad()

    return passes


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pss", PASSES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("network", NETWORKS)
def test_dense(benchmark, request, network, size, pss, method):
    model = build(network)
    plan = dense.analyze(model, model.patch_size)
    x = image(size)
    torch = request.getfixturevalue("torch_peer") if method == "torch_dsparse" else None
    scale, info = 1.0, {}
    if method == "patchwise":
        run, scale, info = patchwise_case(model, plan, x, pss)
    else:
        run = dense_case(model, plan, x, pss, method, torch)
    benchmark.group = f"dense {network} {size}x{size} {pss}"
    rounds = 1 if (size >= 1024 or method == "patchwise") else 3
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0 if rounds == 1 else 1)
    seconds = benchmark.stats.stats.min * scale
    key = (network, size, pss)
    _SECONDS[key + (method,)] = seconds
    c = dense.cost(plan, image_size=(size, size))
    cost_method = "dsparse" if method == "torch_dsparse" else method
    info.update(
        {
            "network": network,
            "patch_size": plan.patch[0],
            "image_size": size,
            "pass": pss,
            "method": method,
            "seconds": seconds,
            "pixels": size * size,
            "ops_per_pixel": c["per_pixel"][cost_method]["ops"],
        }
    )
    if method == "patchwise":
        info["note"] = f"patch scanning timed on {info['timed_pixels']} pixels, scaled linearly"
    base = _SECONDS.get(key + ("patchwise",))
    if method in ("fcn", "dsparse") and base:
        info["speedup"] = base / seconds
        info["theory"] = c["speedup"][method]
        info["fraction_of_theory"] = info["speedup"] / info["theory"]
    if method == "dsparse" and importlib.util.find_spec("torch") is not None:
        # the ratio to PyTorch from interleaved runs (the shared machine's speed drifts between
        # benchmarks; alternating ours and theirs keeps the comparison fair)
        peer = dense_case(
            model, plan, x, pss, "torch_dsparse", request.getfixturevalue("torch_peer")
        )
        best = {"ours": float("inf"), "torch": float("inf")}
        for _ in range(rounds + 1):
            for who, fn in (("ours", run), ("torch", peer)):
                t0 = time.perf_counter()
                fn()
                best[who] = min(best[who], time.perf_counter() - t0)
        info["torch_over_ours"] = best["torch"] / best["ours"]
        info["torch_seconds_interleaved"] = best["torch"]
        info["ours_seconds_interleaved"] = best["ours"]
    benchmark.extra_info.update(info)
    _ROWS.append(info)


# -- peak memory ---------------------------------------------------------------------------------
def peak_rss_run(size: int, tile: int | None, method: str = "dsparse") -> dict[str, Any]:
    """Peak RSS (MB) and seconds of ``predict(pixel65, (1, 3, size, size), tile)`` in a fresh
    process (so earlier allocations do not count)."""
    cmd = [sys.executable, os.path.abspath(__file__), str(size), str(tile or 0), method]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# (size, tile) of the peak-memory runs; the 4096 x 4096 one (about 5 min on 2 cores) is opt-in:
# CNNCORE_BENCH_DENSE_MEMORY_4096=1.
MEMORY_RUNS = [(1024, None), (1024, 256), (2048, 512)] + (
    [(4096, 1024)] if os.environ.get("CNNCORE_BENCH_DENSE_MEMORY_4096") == "1" else []
)


@pytest.mark.parametrize(("size", "tile"), MEMORY_RUNS, ids=str)
def test_peak_memory(benchmark, size, tile):
    """Peak RSS with and without tiles (pixel65, d-sparse; 4096x4096 needs tiles to fit 4 GB)."""
    res = benchmark.pedantic(peak_rss_run, args=(size, tile), rounds=1, iterations=1)
    benchmark.group = "dense peak memory (pixel65, dsparse)"
    benchmark.extra_info.update(res)
    _ROWS.append({"memory": True, **res})


def summary_rows() -> list[str]:
    """The table printed after the dense benchmarks (Markdown)."""
    nan = float("nan")
    lines = [
        "| network | image | pass | method | seconds | measured speedup | theory | of theory "
        "| torch/ours |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in _ROWS:
        if r.get("memory"):
            continue
        lines.append(
            f"| {r['network']} | {r['image_size']} | {r['pass']} | {r['method']} "
            f"| {r['seconds']:.3f} | {r.get('speedup', float('nan')):.1f} "
            f"| {r.get('theory', nan):.1f} | {r.get('fraction_of_theory', nan):.2f} "
            f"| {r.get('torch_over_ours', float('nan')):.2f} |"
        )
    for r in _ROWS:
        if r.get("memory"):
            lines.append(
                f"peak RSS {r['peak_rss_mb']:.0f} MB: {r['size']}x{r['size']} tile={r['tile']} "
                f"({r['seconds']:.1f} s)"
            )
    return lines


@pytest.fixture(scope="module", autouse=True)
def _print_table(request):
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if _ROWS and capture is not None:
        with capture.global_and_fixture_disabled():
            print("\ndense: measured vs theoretical speedup over patch scanning (Markdown)")
            print("\n".join(summary_rows()))


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: VmHWM (Linux), which starts afresh at exec.
    ``ru_maxrss`` does not: Linux carries it over from the parent through fork and exec, so a child
    of a big pytest process reports the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _main(argv: list[str]) -> None:
    size, tile = int(argv[0]), int(argv[1]) or None
    method = argv[2] if len(argv) > 2 else "dsparse"
    model = models.pixel65()
    x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    t0 = time.perf_counter()
    s = dense.predict(model, x, 65, method, tile=tile)
    dt = time.perf_counter() - t0
    assert s.shape == (1, 2, size, size)
    peak = _peak_rss_mb()
    print(
        json.dumps(
            {"size": size, "tile": tile, "method": method, "seconds": dt, "peak_rss_mb": peak}
        )
    )


if __name__ == "__main__":
    _main(sys.argv[1:])
