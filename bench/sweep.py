"""The sweep behind ``python -m bench``: kernel throughput and dense-inference speedups.

Dense methods, per network, image size and pass ("forward": the scores of every pixel;
"backward": forward and backward of a training step with every pixel counted, i.e. the gradient
of the scores' sum reaching every Parameter):

- ``dsparse``: the d-regularly sparse network (``cnncore.dense.predict`` / ``to_dense``).
- ``fcn``: shift and stitch, ``S*S`` passes of the FCN (``to_fcn``). When ``S*S`` exceeds
  ``fcn_shifts``, an evenly spread sample of the passes is timed and scaled to all of them.
- ``patchwise``: patch scanning, every pixel's patch through the classifier in batches. It is
  timed on a random sample of pixels (enough to fill the time budget, at least one batch) and
  scaled linearly to the whole image; the rows record ``timed_pixels`` and ``pixels``.

The theoretical ratios come from ``cnncore.dense.cost`` (operations per pixel on that image size,
borders included).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from bench import machine, report, workloads

NETWORKS = ("toy15", "pixel65", "pixel129", "pixel193")
SIZES = (64, 128, 256)
QUICK_NETWORKS = ("toy15", "pixel65")
QUICK_SIZES = (16, 24)
# The configuration documented to beat patch scanning by more than 1500x (forward and backward).
RECORD = {
    "networks": ("pixel321",),
    "sizes": (128, 256, 384),
    "methods": ("patchwise", "dsparse"),
    "patch_budget": 4.0,  # a patch of pixel321 costs about 0.1-0.3 s: time a few batches
}


@dataclass
class Options:
    sizes: tuple[int, ...] = SIZES
    networks: tuple[str, ...] = NETWORKS
    quick: bool = False
    kernels: bool = True
    dense: bool = True
    budget: float = 1.0  # seconds per dense measurement (repetitions while under it)
    patch_budget: float = 1.5  # seconds of patch scanning per (network, size, forward pass)
    fcn_shifts: int = 8  # at most this many FCN passes timed per measurement, then scaled
    patch_batch: int | None = None  # patches per batch in patch scanning (None: the library's)
    methods: tuple[str, ...] = ("patchwise", "fcn", "dsparse")  # patch scanning is the baseline
    batch: int = 1  # images per dense measurement
    seed: int = 0
    progress: bool = True
    notes: list[str] = field(default_factory=list)


def quick_options(**kw: Any) -> Options:
    """Tiny sizes: the whole sweep in seconds (for trying the harness and for its tests)."""
    base = {
        "sizes": QUICK_SIZES,
        "networks": QUICK_NETWORKS,
        "quick": True,
        "budget": 0.05,
        "patch_budget": 0.05,
        "fcn_shifts": 4,
        "patch_batch": 8,
    }
    base.update(kw)
    return Options(**base)


# --------------------------------------------------------------------------------------------
# networks
def build_network(name: str) -> Any:
    """A patch network by name (``bench.networks``), float32, in eval mode."""
    from bench import networks

    return networks.build(name)


def _measure(fn: Callable[[], Any], budget: float) -> float:
    """Fastest of as many runs of ``fn`` as fit in ``budget`` seconds (at least one)."""
    times = []
    while True:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if sum(times) >= budget or len(times) >= 10:
            return min(times)


# --------------------------------------------------------------------------------------------
# dense methods: each returns {"seconds": for the whole image, ...what was timed of it}
def _dsparse(model: Any, P: int, x: np.ndarray, pss: str, opt: Options) -> dict[str, Any]:
    from cnncore.dense import predict, to_dense

    if pss == "forward":
        t = _measure(lambda: predict(model, x, P, "dsparse"), opt.budget)
    else:
        net = to_dense(model, P)
        dy = np.ones((x.shape[0], net.plan.num_classes) + x.shape[2:], x.dtype)

        def step():
            net.forward(x)
            net.backward(dy)

        t = _measure(step, opt.budget)
        model.zero_grad()
    return {"seconds": t}


def _shift_sample(S: tuple[int, int], hw: tuple[int, int], k: int) -> list[tuple[int, int]]:
    shifts = [(a, b) for a in range(min(S[0], hw[0])) for b in range(min(S[1], hw[1]))]
    if len(shifts) <= k:
        return shifts
    pick = np.linspace(0, len(shifts) - 1, k).round().astype(int)
    return [shifts[i] for i in pick]


def _fcn(model: Any, P: int, x: np.ndarray, pss: str, opt: Options) -> dict[str, Any]:
    from cnncore.dense import to_fcn
    from cnncore.dense.tiling import block_ranges, window
    from cnncore.nn import Sequential, no_grad

    net = to_fcn(model, P)
    hw = (int(x.shape[2]), int(x.shape[3]))
    block = window(x, *block_ranges(hw, net.plan.halo("fcn")))
    n_all = min(net.plan.stride[0], hw[0]) * min(net.plan.stride[1], hw[1])
    shifts = _shift_sample(net.plan.stride, hw, opt.fcn_shifts)
    if pss == "forward":
        if len(shifts) == n_all:
            from cnncore.dense import predict

            t = _measure(lambda: predict(model, x, P, "fcn"), opt.budget)
        else:

            def passes():
                with no_grad():
                    for a, b in shifts:
                        net.forward_valid(block[:, :, a:, b:])

            t = _measure(passes, opt.budget)
    else:
        dblock = np.zeros_like(block)

        def passes():
            for a, b in shifts:
                y = net.forward_valid(block[:, :, a:, b:])
                dblock[:, :, a:, b:] += Sequential.backward(net, np.ones_like(y))

        t = _measure(passes, opt.budget)
        model.zero_grad()
    return {"seconds": t * n_all / len(shifts), "timed_passes": len(shifts), "passes": n_all}


def _patchwise(model: Any, P: int, x: np.ndarray, pss: str, opt: Options) -> dict[str, Any]:
    from numpy.lib.stride_tricks import sliding_window_view

    from cnncore.dense import analyze
    from cnncore.dense.patchwise import default_batch_size, scan_patches
    from cnncore.dense.tiling import block_ranges, window
    from cnncore.nn import no_grad

    plan = analyze(model, P)
    N, hw = x.shape[0], (int(x.shape[2]), int(x.shape[3]))
    block = window(x, *block_ranges(hw, plan.halo("patchwise")))
    bs = opt.patch_batch or default_batch_size(plan, x.dtype.itemsize)
    n_pix = N * hw[0] * hw[1]
    rng = np.random.default_rng(opt.seed)
    win = sliding_window_view(block, plan.patch, axis=(2, 3))

    def forward(pixels):
        with no_grad():
            scan_patches(model, block, hw, plan, bs, pixels)

    def backward(pixels):  # the same batches as scan_patches, with a backward after each
        for start in range(0, pixels.size, bs):
            n, rest = np.divmod(pixels[start : start + bs], hw[0] * hw[1])
            i, j = np.divmod(rest, hw[1])
            s = model(win[n, :, i, j])
            model.backward(np.ones_like(s))

    run = forward if pss == "forward" else backward
    # probe on one batch, then as many pixels as the budget allows (whole batches, at least one)
    probe = rng.choice(n_pix, size=min(bs, n_pix), replace=False)
    t0 = time.perf_counter()
    run(probe)
    per_pixel = (time.perf_counter() - t0) / probe.size
    budget = opt.patch_budget if pss == "forward" else 2 * opt.patch_budget
    n = int(min(n_pix, max(probe.size, budget / max(per_pixel, 1e-9))))
    if n < n_pix:
        n = min(n_pix, max(bs, n // bs * bs))
    pixels = np.sort(rng.choice(n_pix, size=n, replace=False))  # scanning order
    t0 = time.perf_counter()
    run(pixels)
    t = time.perf_counter() - t0
    model.zero_grad()
    return {
        "seconds": t * n_pix / n,
        "timed_pixels": int(n),
        "pixels": int(n_pix),
        "batch_size": bs,
    }


DENSE_METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "patchwise": _patchwise,
    "fcn": _fcn,
    "dsparse": _dsparse,
}


# --------------------------------------------------------------------------------------------
# the sweep
def _kernel_cases(quick: bool, torch: Any) -> list[tuple[Callable[[], Any], str]]:
    """Lazy (factory, label) pairs of every kernel case to time."""
    impls = ("cnncore", "torch") if torch is not None else ("cnncore",)
    conv = workloads.CONV_SHAPES_QUICK if quick else workloads.CONV_SHAPES
    pool = workloads.POOL_SHAPES_QUICK if quick else workloads.POOL_SHAPES
    cases = []
    for direction in report.PASSES:
        for shape in conv:
            for impl in impls:
                cases.append(
                    (
                        lambda s=shape, d=direction, i=impl: workloads.conv_case(s, d, i, torch),
                        f"conv2d {direction} {workloads.conv_config(shape)} {impl}",
                    )
                )
    if workloads.pool_available():
        for direction in report.PASSES:
            for shape in pool:
                for impl in impls:
                    cases.append(
                        (
                            lambda s=shape, d=direction, i=impl: workloads.pool_case(
                                s, d, i, torch
                            ),
                            f"max_pool2d {direction} {workloads.pool_config(shape)} {impl}",
                        )
                    )
    return cases


def _bar(total: int, desc: str, opt: Options) -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        disable=not opt.progress,
        file=sys.stderr,
        leave=True,
        dynamic_ncols=True,
    )


def run_kernels(res: dict[str, Any], opt: Options) -> None:
    try:
        import torch

        machine.set_torch_threads(torch)
    except ImportError:
        torch = None
        res["notes"].append("PyTorch is not installed: the PyTorch peer rows are skipped")
    if not workloads.pool_available():
        res["notes"].append("cnncore.functional.max_pool2d is not available: pooling skipped")
    cases = _kernel_cases(opt.quick, torch)
    ref = res["reference"]
    with _bar(len(cases), "kernels", opt) as bar:
        for factory, label in cases:
            bar.set_postfix_str(label, refresh=True)
            case = factory()
            t = machine.best_time(case.run, min_reps=3, max_time=0.05 if opt.quick else 1.0)
            res["throughput"].append(
                report.throughput_info(
                    seconds=t["min"],
                    kernel=case.kernel,
                    direction=case.direction,
                    config=case.config,
                    impl=case.impl,
                    sgemm_peak_gflops=ref["sgemm_gflops"],
                    copy_bandwidth_gbs=ref["copy_gbs"],
                    median_seconds=t["median"],
                    reps=t["reps"],
                    **case.work(),
                )
            )
            bar.update()


def measure_references(res: dict[str, Any], opt: Options) -> None:
    """sgemm peak and copy bandwidth into ``res["reference"]``, keeping the best reading."""
    ref = res["reference"]
    with _bar(2, "machine references", opt) as bar:
        sizes = (512,) if opt.quick else (2048, 4096)
        g = machine.sgemm_peak(sizes, reps=2)["gflops"]
        ref["sgemm_gflops"] = max(g, ref["sgemm_gflops"] or 0.0)
        bar.update()
        b = machine.copy_bandwidth(32 if opt.quick else 256)["gbs"]
        ref["copy_gbs"] = max(b, ref["copy_gbs"] or 0.0)
        bar.update()


def dense_plan(opt: Options) -> list[tuple[str, int, str, str]]:
    """(network, image size, pass, method) of every dense measurement, patch scanning first."""
    return [
        (net, size, pss, method)
        for net in opt.networks
        for size in opt.sizes
        for pss in report.PASSES
        for method in ("patchwise", "fcn", "dsparse")
        if method in opt.methods
    ]


def run_dense(res: dict[str, Any], opt: Options) -> None:
    from cnncore.dense import cost

    plan = dense_plan(opt)
    models: dict[str, Any] = {}
    rng = np.random.default_rng(opt.seed)
    with _bar(len(plan), "dense", opt) as bar:
        for net_name, size, pss, method in plan:
            bar.set_postfix_str(f"{net_name} {size}x{size} {pss} {method}", refresh=True)
            if net_name not in models:
                models[net_name] = build_network(net_name)
            model = models[net_name]
            P = int(model.patch_size)
            x = rng.standard_normal((opt.batch, 3, size, size), dtype=np.float32)
            c = cost(model, P, (size, size))
            row = {
                "network": net_name,
                "patch_size": P,
                "image_size": size,
                "batch": opt.batch,
                "pass": pss,
                "method": method,
                "pixels": opt.batch * size * size,
                "ops_per_pixel": c["per_pixel"][method]["ops"],
            }
            t0 = time.perf_counter()
            row.update(DENSE_METHODS[method](model, P, x, pss, opt))
            row["measure_seconds"] = time.perf_counter() - t0  # wall time spent measuring it
            res["dense"].append(row)
            bar.update()
    res["speedups"] = report.speedups(res["dense"])


def run(opt: Options, source: str = "python -m bench") -> dict[str, Any]:
    """The whole sweep; returns the results dictionary (``bench.report``)."""
    res = report.new_results(source, machine.machine_info())
    res["options"] = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in opt.__dict__.items()
        if k not in ("notes", "progress")
    }
    res["notes"] += opt.notes
    res["machine"]["load_average_start"] = _load()
    t0 = time.perf_counter()
    measure_references(res, opt)
    if opt.quick:
        res["notes"].append("quick mode: tiny sizes, references on small arrays (not the peaks)")
    if opt.kernels:
        run_kernels(res, opt)
        # once more after the kernels: the best of the two is the ceiling (a shared machine
        # makes any single reading low), and the rows' fractions follow it
        measure_references(res, opt)
        for row in res["throughput"]:
            report.set_ceilings(row, res["reference"]["sgemm_gflops"], res["reference"]["copy_gbs"])
    if opt.dense:
        run_dense(res, opt)
        note = report.sampling_note(res["speedups"])
        if note:
            res["notes"].append(note)
        if any(r.get("timed_passes", 0) < r.get("passes", 0) for r in res["dense"]):
            res["notes"].append(
                f"FCN shift and stitch: at most {opt.fcn_shifts} of the S*S passes are timed "
                "(evenly spread) and scaled to all of them"
            )
        res["notes"].append(
            "backward = forward + backward of a training step with every pixel counted; "
            "theory = operations per pixel of patch scanning / of the method "
            "(cnncore.dense.cost, borders included), the same for both passes"
        )
    res["seconds"] = time.perf_counter() - t0
    res["machine"]["load_average_end"] = _load()
    return res


def _load() -> float | None:
    """The 1-minute load average (other processes share the cores: read the numbers with it)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # pragma: no cover - not on Unix
        return None


def parse_list(text: str | Iterable[Any], kind: type = str) -> tuple[Any, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(kind(s) for s in (str(i).strip() for i in items) if s)
