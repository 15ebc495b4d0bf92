"""Dense pixelwise classification: d-sparse and FCN against patch scanning, PyTorch, ONNX Runtime.

For ``pixel65`` and ``toy15`` on N x N images, forward (``predict``) at N = 256 and 512
(``CNNCORE_BENCH_DENSE_SIZES``, e.g. ``256,512,1024``) and backward (forward + backward of a
training step with every pixel counted) at N = 256 (``CNNCORE_BENCH_DENSE_BACKWARD_SIZES``); select
with ``-k``.  The timed callables are ``bench.dense_cases``', the same as ``python -m bench``'s.
Methods per (network, size, pass):

- ``patchwise``: patch scanning (``cnncore.dense.patchwise.scan_patches``, bounded batches), timed
  on a random sample of pixels (``dense_cases.patch_sample``, about ``PATCH_BUDGET`` seconds)
  and **scaled linearly** to the whole image: the times that pytest-benchmark shows for it are
  already scaled (``timed_pixels`` < ``pixels`` and ``scale`` in ``extra_info``);
- ``torch_dsparse``: the same d-sparse network written with PyTorch CPU ops (``conv2d`` and
  ``max_pool2d`` with dilation, 2 threads), the peer, in this process;
- ``onnx_dsparse`` (forward): that network as ONNX, run by ONNX Runtime CPU with 2 intra-op threads;
- ``fcn``: shift and stitch (at most ``FCN_SHIFTS`` of the S x S passes timed, evenly spread, and
  scaled; shown scaled); ``dsparse``: the d-sparse network.

Run in that order, so the FCN and d-sparse rows carry in ``extra_info`` the measured speedup over
patch scanning beside the theoretical one (``cnncore.dense.cost`` on that image size) and the
fraction of the theory reached; the d-sparse row also the ratios to PyTorch and ONNX Runtime from
interleaved rounds.  A table is printed at the end.  ``test_peak_memory`` runs ``predict`` in a
subprocess and reports its peak RSS with and without tiles (1024; 2048 with
``CNNCORE_BENCH_DENSE_MEMORY_LARGE=1``, 4096 x 4096 with ``CNNCORE_BENCH_DENSE_MEMORY_4096=1``);
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

if __name__ == "__main__":  # run as a script (the peak-memory child): the repository root first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import dense_cases, machine, networks  # noqa: E402
from bench import rounds as rounds_mod  # noqa: E402
from cnncore import dense, models  # noqa: E402
from cnncore.dense.patchwise import default_batch_size  # noqa: E402

NETWORKS = ("toy15", "pixel65")
# image sizes: 1024 takes minutes per row on 2 cores, so it is opt-in, e.g.
# CNNCORE_BENCH_DENSE_SIZES=256,512,1024 pytest bench/bench_dense.py --benchmark-only
SIZES = tuple(int(v) for v in os.environ.get("CNNCORE_BENCH_DENSE_SIZES", "256,512").split(","))
# the backward at 512 takes about a minute per network on 2 cores: opt-in
BACKWARD_SIZES = tuple(
    int(v) for v in os.environ.get("CNNCORE_BENCH_DENSE_BACKWARD_SIZES", "256").split(",")
)
METHODS = ("patchwise", "torch_dsparse", "onnx_dsparse", "fcn", "dsparse")
PASSES = ("forward", "backward")
PATCH_BUDGET = 2.0  # seconds of patch scanning per measurement (then scaled)
FCN_SHIFTS = 8  # FCN passes timed per measurement (evenly spread), then scaled to all S*S
ROUNDS = 3  # interleaved rounds of ours and the peers for the ratios
_SECONDS: dict[tuple, float] = {}  # (network, size, pass, method) -> seconds for the whole image
_ROWS: list[dict[str, Any]] = []


def build(network: str):
    return networks.build(network)


# -- the measurements (bench.dense_cases, shared with the sweep): each gives (run, scale), where
# scale turns run()'s seconds into the whole image's
def patchwise_case(model, plan, x, pss):
    """Our patch scanning on a random sample of pixels (about ``PATCH_BUDGET`` seconds)."""
    bs = default_batch_size(plan, x.dtype.itemsize)
    rng = np.random.default_rng(2)
    pixels = dense_cases.patch_sample(model, plan, x, pss, PATCH_BUDGET, bs, rng)
    run, scale, info = dense_cases.patchwise(model, plan, x, pss, pixels, bs)
    return run, scale, {"timed_pixels": info["timed_pixels"]}


def dense_case(model, plan, x, pss, method, torch=None):
    """``(run, scale)``: ``run()`` does the timed work; ``scale`` turns its seconds into the whole
    image's (FCN times ``FCN_SHIFTS`` of its S x S passes)."""
    if method == "torch_dsparse":
        return dense_cases.torch_dsparse(torch, plan, x, pss), 1.0
    if method == "onnx_dsparse":
        run, scale, _ = dense_cases.onnx_dsparse(plan, x, machine.threads())
    elif method == "dsparse":
        run, scale, _ = dense_cases.dsparse(model, plan.patch, x, pss)
    else:
        run, scale, _ = dense_cases.fcn(model, plan.patch, x, pss, FCN_SHIFTS)
    return run, scale


def _cells() -> list[tuple[str, int, str, str]]:
    """(network, size, pass, method) of the default rows: ONNX Runtime for the forward only."""
    return [
        (n, s, p, m)
        for n in NETWORKS
        for p in PASSES
        for s in (SIZES if p == "forward" else BACKWARD_SIZES)
        for m in METHODS
        if not (m == "onnx_dsparse" and p == "backward")
    ]


def _scale_stats(benchmark, scale: float) -> None:
    """Show the whole image's time in pytest-benchmark's own table: scale the recorded rounds
    (before any statistic is read, they are computed from ``data`` on first use)."""
    stats = benchmark.stats.stats
    stats.data[:] = [t * scale for t in stats.data]


def _peer_available(method: str) -> bool:
    if method == "torch_dsparse":
        return importlib.util.find_spec("torch") is not None
    if method == "onnx_dsparse":
        return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
    return True


@pytest.mark.parametrize(
    ("network", "size", "pss", "method"), _cells(), ids=["-".join(map(str, c)) for c in _cells()]
)
def test_dense(benchmark, request, network, size, pss, method):
    model = build(network)
    plan = dense.analyze(model, model.patch_size)
    x = dense_cases.image(1, size, 0)
    torch = request.getfixturevalue("torch_peer") if method == "torch_dsparse" else None
    if method == "onnx_dsparse" and not _peer_available(method):
        pytest.skip("onnx/onnxruntime not installed: pip install 'cnncore[bench]'")
    scale, info = 1.0, {}
    if method == "patchwise":
        run, scale, info = patchwise_case(model, plan, x, pss)
    else:
        run, scale = dense_case(model, plan, x, pss, method, torch)
        if scale != 1.0:
            info["note"] = f"FCN: {FCN_SHIFTS} passes timed, scaled by {scale:g}"
    benchmark.group = f"dense {network} {size}x{size} {pss}"
    rounds = 1 if (size >= 512 or method == "patchwise") else 3  # 512: seconds per call
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0 if rounds == 1 else 1)
    _scale_stats(benchmark, scale)
    seconds = benchmark.stats.stats.min
    key = (network, size, pss)
    _SECONDS[key + (method,)] = seconds
    c = dense.cost(plan, image_size=(size, size))
    cost_method = dense_cases.COST_METHOD.get(method, method)
    info.update(
        {
            "network": network,
            "patch_size": plan.patch[0],
            "image_size": size,
            "pass": pss,
            "method": method,
            "impl": "torch" if method.startswith("torch") else method.split("_")[0],
            "seconds": seconds,
            "scale": scale,
            "pixels": size * size,
            "ops_per_pixel": c["per_pixel"][cost_method]["ops"],
        }
    )
    if method == "patchwise":
        info["note"] = f"patch scanning timed on {info['timed_pixels']} pixels, scaled linearly"
    base = _SECONDS.get(key + ("patchwise",))
    if method != "patchwise" and base:
        info["speedup"] = base / seconds
        info["theory"] = c["per_pixel"]["patchwise"]["ops"] / c["per_pixel"][cost_method]["ops"]
        info["fraction_of_theory"] = info["speedup"] / info["theory"]
    if method == "dsparse":
        # the ratios to the peers from interleaved rounds (the shared machine's speed drifts
        # between benchmarks; alternating ours and theirs keeps the comparison fair)
        runners = {"ours": rounds_mod.Local(run, warmup=0)}
        for peer in ("torch_dsparse", "onnx_dsparse"):
            if _peer_available(peer) and (peer, pss) != ("onnx_dsparse", "backward"):
                t = request.getfixturevalue("torch_peer") if peer == "torch_dsparse" else None
                runners[peer] = rounds_mod.Local(dense_case(model, plan, x, pss, peer, t)[0])
        timed = rounds_mod.interleave(runners, ROUNDS, 0.0)
        for peer in runners:
            info[f"{peer}_seconds_interleaved"] = timed[peer]["median"]
            if peer != "ours":
                info[f"{peer}_over_ours"] = timed[peer]["median"] / timed["ours"]["median"]
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
MEMORY_RUNS = (
    [(1024, None), (1024, 256)]
    + ([(2048, 512)] if os.environ.get("CNNCORE_BENCH_DENSE_MEMORY_LARGE") == "1" else [])
    + ([(4096, 1024)] if os.environ.get("CNNCORE_BENCH_DENSE_MEMORY_4096") == "1" else [])
)


@pytest.mark.parametrize(("size", "tile"), MEMORY_RUNS, ids=str)
def test_peak_memory(benchmark, size, tile):
    """Peak RSS with and without tiles (pixel65, d-sparse; 4096x4096 needs tiles to fit 4 GB)."""
    res = benchmark.pedantic(peak_rss_run, args=(size, tile), rounds=1, iterations=1)
    benchmark.group = "dense peak memory (pixel65, dsparse)"
    benchmark.extra_info.update(res)
    _ROWS.append({"memory": True, **res})


def _f(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def summary_rows() -> list[str]:
    """The table printed after the dense benchmarks (Markdown; "-" where a figure does not
    apply). Seconds are for the whole image (patch scanning and FCN scaled from their samples)."""
    lines = [
        "| network | image | pass | method | seconds | speedup | theory | of theory "
        "| PyTorch/ours | ONNX Runtime/ours |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in _ROWS:
        if r.get("memory"):
            continue
        lines.append(
            f"| {r['network']} | {r['image_size']} | {r['pass']} | {r['method']} "
            f"| {r['seconds']:.3f} | {_f(r.get('speedup'), '.1f')} | {_f(r.get('theory'), '.1f')} "
            f"| {_f(r.get('fraction_of_theory'), '.2f')} "
            f"| {_f(r.get('torch_dsparse_over_ours'), '.2f')} "
            f"| {_f(r.get('onnx_dsparse_over_ours'), '.2f')} |"
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
