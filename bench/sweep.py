"""The sweep behind ``python -m bench``: kernel throughput and dense-inference speedups.

Every figure is the median of ``rounds`` interleaved rounds (``bench.rounds``: ours, then the
peer, the order flipping each round) with the min-max spread kept.  The peer (PyTorch CPU) runs in
its own process by default (``bench.peer`` says why); ONNX Runtime runs in this one (its own
thread pool, no OpenMP).

Kernels: conv2d forward and backward on ``workloads.CONV_SHAPES`` (the algorithm "auto" ran is
recorded), max pooling with indices, and a CIFAR-sized network's training step and inference
(``bench.cifar``, batch 64 and 128, the same weights on both sides).

Dense methods (``bench.dense_cases``), per network, image size and pass: ours (``patchwise``,
``fcn``, ``dsparse``) and the strong baselines (``torch_patchwise``, ``torch_dsparse``,
``onnx_dsparse``).  Patch scanning (both) is timed on a random sample of pixels (the same sample
for both, enough for the time budget, whole batches) and scaled linearly to the image; FCN times
an evenly spread sample of its S*S passes when there are more than ``fcn_shifts``.  The
theoretical ratios come from ``cnncore.dense.cost`` (operations per pixel on that image size,
borders included).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from tqdm import tqdm

from bench import cifar, dense_cases, fma, machine, report, rounds, workloads
from bench import peer as peer_mod

NETWORKS = ("toy15", "pixel65", "pixel129", "pixel193")
SIZES = (64, 128, 256)
QUICK_NETWORKS = ("toy15", "pixel65")
QUICK_SIZES = (16, 24)
CIFAR_BATCHES = (64, 128)
QUICK_CIFAR_BATCHES = (4,)
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
    rounds: int = 5  # interleaved rounds per figure (the median is quoted, min-max kept)
    min_round: float = 0.2  # seconds per kernel round (fast kernels repeat within a round)
    patch_rounds: int = 3  # rounds of patch scanning (each on the same sample of pixels)
    patch_budget: float = 1.5  # seconds of one patch-scanning round of ours (forward; x2 backward)
    fcn_shifts: int = 8  # at most this many FCN passes timed per measurement, then scaled
    patch_batch: int | None = None  # our patches per batch (None: the library's)
    methods: tuple[str, ...] = ("patchwise", "fcn", "dsparse")  # ours; patch scanning first
    peers: tuple[str, ...] = ("torch_patchwise", "torch_dsparse", "onnx_dsparse")
    # "best": PyTorch in two processes of its own (default and passive wait policy), the faster
    # per case; "own": one process, libgomp's default policy; "shared": in this process
    peer_process: str = "best"
    cifar_batches: tuple[int, ...] = CIFAR_BATCHES
    # (network, size) measured for d-sparse against its peers only (no patch scanning, no FCN),
    # when the network is among ``networks`` and the size not among ``sizes``
    peer_only: tuple[tuple[str, int], ...] = (("pixel65", 512),)
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
        "rounds": 3,
        "min_round": 0.005,
        "patch_rounds": 2,
        "patch_budget": 0.03,
        "fcn_shifts": 4,
        "patch_batch": 8,
        "cifar_batches": QUICK_CIFAR_BATCHES,
        "peer_only": (("pixel65", 20),),
    }
    base.update(kw)
    return Options(**base)


def build_network(name: str) -> Any:
    """A patch network by name (``bench.networks``), float32, in eval mode."""
    from bench import networks

    return networks.build(name)


def _bar(total: int, desc: str, opt: Options) -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        disable=not opt.progress,
        file=sys.stderr,
        leave=True,
        dynamic_ncols=True,
    )


# --------------------------------------------------------------------------------------------
# kernels
def kernel_specs(opt: Options) -> list[dict[str, Any]]:
    """The specification of every kernel case (``workloads.build_case``)."""
    conv = workloads.CONV_SHAPES_QUICK if opt.quick else workloads.CONV_SHAPES
    pool = workloads.POOL_SHAPES_QUICK if opt.quick else workloads.POOL_SHAPES
    specs: list[dict[str, Any]] = []
    for direction in report.PASSES:
        specs += [{"kind": "conv", "shape": s, "direction": direction} for s in conv]
    if workloads.pool_available():
        for direction in report.PASSES:
            specs += [{"kind": "pool", "shape": s, "direction": direction} for s in pool]
    for mode in ("train", "inference"):
        specs += [{"kind": "cifar", "batch": b, "mode": mode} for b in opt.cifar_batches]
    return specs


def run_kernels(res: dict[str, Any], opt: Options, peer: Any) -> None:
    if peer is None:
        res["notes"].append("PyTorch is not installed: the PyTorch peer rows are skipped")
    if not workloads.pool_available():
        res["notes"].append("cnncore.functional.max_pool2d is not available: pooling skipped")
    specs = kernel_specs(opt)
    ref = res["reference"]
    with _bar(len(specs), "kernels", opt) as bar:
        for spec in specs:
            case = workloads.build_case(spec, "cnncore")
            bar.set_postfix_str(f"{case.kernel} {case.direction} {case.config}", refresh=True)
            runners: dict[str, Any] = {"cnncore": rounds.Local(case.run)}
            if peer is not None:
                peer.prepare(spec)
                runners.update(peer_mod.runners(peer, "torch"))
            timed = peer_mod.merge_policies(rounds.interleave(runners, opt.rounds, opt.min_round))
            extra = {}
            if spec["kind"] == "conv":
                extra["algorithm"] = workloads.conv_algorithm(spec["shape"], spec["direction"])
            elif spec["kind"] == "cifar":
                extra["algorithm"] = cifar.conv_algorithms(spec["batch"], spec["mode"])
            for impl, t in timed.items():
                res["throughput"].append(
                    report.throughput_info(
                        seconds=t["median"],
                        kernel=case.kernel,
                        direction=case.direction,
                        config=case.config,
                        impl=impl,
                        sgemm_peak_gflops=ref["sgemm_gflops"],
                        copy_bandwidth_gbs=ref["copy_gbs"],
                        seconds_min=t["min"],
                        seconds_max=t["max"],
                        rounds=t["rounds"],
                        calls_per_round=t["calls"],
                        **{k: t[k] for k in ("peer_wait_policy", "other_policy_median") if k in t},
                        **(extra if impl == "cnncore" else {}),
                        **case.work(),
                    )
                )
            bar.update()


def measure_references(res: dict[str, Any], opt: Options) -> None:
    """sgemm peak and copy bandwidth into ``res["reference"]``, keeping the best reading so far
    (the sweep reads them at the start, between parts and at the end: a shared machine makes any
    single reading low, and the best is the ceiling), and the FMA peak (``bench.fma``: measured by
    an FMA loop, else estimated from the ISA and /proc/cpuinfo's clock), also the best so far."""
    ref = res["reference"]
    with _bar(2, "machine references", opt) as bar:
        sizes = (512,) if opt.quick else (2048, 3072, 4096)
        g = machine.sgemm_peak(sizes, reps=2 if opt.quick else 3)["gflops"]
        ref["sgemm_gflops"] = max(g, ref["sgemm_gflops"] or 0.0)
        ref.setdefault("sgemm_readings", []).append(round(g, 2))
        bar.update()
        b = machine.copy_bandwidth(32 if opt.quick else 256, reps=3 if opt.quick else 7)["gbs"]
        ref["copy_gbs"] = max(b, ref["copy_gbs"] or 0.0)
        ref.setdefault("copy_readings", []).append(round(b, 2))
        bar.update()
    f = fma.peak(machine.threads(), 0.05 if opt.quick else 0.3, 2 if opt.quick else 3)
    if f["gflops"]:
        ref.setdefault("fma_readings", []).append(round(f["gflops"], 2))
    if f["gflops"] and f["gflops"] > (ref.get("fma_gflops") or 0.0):
        ref["fma_peak"] = f
        ref["fma_gflops"] = f["gflops"]


# --------------------------------------------------------------------------------------------
# dense
def dense_plan(opt: Options) -> list[tuple[str, int, str, bool]]:
    """(network, image size, pass, peers only) of every dense group."""
    plan = [(n, s, p, False) for n in opt.networks for s in opt.sizes for p in report.PASSES]
    extra = [(n, s) for n, s in opt.peer_only if n in opt.networks and s not in opt.sizes]
    return plan + [(n, s, p, True) for n, s in extra for p in report.PASSES]


def _peer_spec(net_name: str, model: Any, size: int, pss: str, method: str, opt: Options) -> dict:
    return {
        "kind": "dense",
        "network": net_name,
        "state": {k: np.array(v) for k, v in model.state_dict().items()},
        "size": size,
        "batch": opt.batch,
        "seed": opt.seed + size,
        "pass": pss,
        "method": method,
    }


def _row_times(t: dict[str, Any], scale: float) -> dict[str, Any]:
    row = {
        "seconds": t["median"] * scale,
        "seconds_min": t["min"] * scale,
        "seconds_max": t["max"] * scale,
        "rounds": t["rounds"],
    }
    if "peer_wait_policy" in t:
        row["peer_wait_policy"] = t["peer_wait_policy"]
    return row


def _patch_group(model, plan, x, pss, opt, peer, spec) -> dict[str, dict[str, Any]]:
    """Ours and PyTorch's patch scanning on the same sample of pixels, interleaved rounds."""
    from cnncore.dense.patchwise import default_batch_size

    bs = opt.patch_batch or default_batch_size(plan, x.dtype.itemsize)
    budget = opt.patch_budget if pss == "forward" else 2 * opt.patch_budget
    rng = np.random.default_rng(opt.seed)
    pixels = dense_cases.patch_sample(model, plan, x, pss, budget, bs, rng)
    run, scale, info = dense_cases.patchwise(model, plan, x, pss, pixels, bs)
    runners: dict[str, Any] = {"patchwise": rounds.Local(run, warmup=0)}
    infos = {"patchwise": info}
    if peer is not None and "torch_patchwise" in opt.peers:
        tuned = opt.patch_batch if opt.quick else None  # quick: no tuning
        got = peer.prepare(
            {**spec, "method": "torch_patchwise", "pixels": pixels, "batch_size": tuned}
        )
        runners.update(peer_mod.runners(peer, "torch_patchwise"))
        infos["torch_patchwise"] = {**info, "batch_size": got.get("batch_size")}
    timed = peer_mod.merge_policies(rounds.interleave(runners, opt.patch_rounds, 0.0))
    return {m: {**infos[m], **_row_times(timed[m], scale)} for m in timed}


def _dense_group(model, plan, x, pss, opt, peer, spec) -> dict[str, dict[str, Any]]:
    """Ours (FCN, d-sparse) and the d-sparse peers, interleaved rounds, each call once a round."""
    P = int(model.patch_size)
    runners: dict[str, Any] = {}
    infos: dict[str, dict[str, Any]] = {}
    scales: dict[str, float] = {}
    for method in ("fcn", "dsparse"):
        if method in opt.methods:
            if method == "fcn":
                run, scales[method], infos[method] = dense_cases.fcn(
                    model, P, x, pss, opt.fcn_shifts
                )
            else:
                run, scales[method], infos[method] = dense_cases.dsparse(model, P, x, pss)
            runners[method] = rounds.Local(run)
    if peer is not None and "torch_dsparse" in opt.peers:
        peer.prepare({**spec, "method": "torch_dsparse"})
        runners.update(peer_mod.runners(peer, "torch_dsparse"))
        scales["torch_dsparse"] = 1.0
        infos["torch_dsparse"] = {}
    if pss == "forward" and "onnx_dsparse" in opt.peers and _has("onnxruntime", "onnx"):
        run, scales["onnx_dsparse"], infos["onnx_dsparse"] = dense_cases.onnx_dsparse(
            plan, x, machine.threads()
        )
        runners["onnx_dsparse"] = rounds.Local(run)
    timed = peer_mod.merge_policies(rounds.interleave(runners, opt.rounds, 0.0))
    return {m: {**infos[m], **_row_times(timed[m], scales[m])} for m in timed}


def _has(*modules: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


def run_dense(res: dict[str, Any], opt: Options, peer: Any) -> None:
    from cnncore.dense import analyze, cost

    plan_list = dense_plan(opt)
    models: dict[str, Any] = {}
    if "onnx_dsparse" in opt.peers and not _has("onnxruntime", "onnx"):
        res["notes"].append("onnx/onnxruntime not installed: the ONNX Runtime rows are skipped")
    with _bar(len(plan_list), "dense", opt) as bar:
        for net_name, size, pss, peers_only in plan_list:
            bar.set_postfix_str(f"{net_name} {size}x{size} {pss}", refresh=True)
            if net_name not in models:
                models[net_name] = build_network(net_name)
            model = models[net_name]
            P = int(model.patch_size)
            plan = analyze(model, P)
            spec = _peer_spec(net_name, model, size, pss, "", opt)
            x = dense_cases.image(opt.batch, size, spec["seed"])
            c = cost(model, P, (size, size))
            groups = {}
            if "patchwise" in opt.methods and not peers_only:
                groups.update(_patch_group(model, plan, x, pss, opt, peer, spec))
            sub = replace(opt, methods=("dsparse",)) if peers_only else opt
            groups.update(_dense_group(model, plan, x, pss, sub, peer, spec))
            for method, timed in groups.items():
                res["dense"].append(
                    {
                        "network": net_name,
                        "patch_size": P,
                        "image_size": size,
                        "batch": opt.batch,
                        "pass": pss,
                        "method": method,
                        "pixels": opt.batch * size * size,
                        "ops_per_pixel": c["per_pixel"][
                            dense_cases.COST_METHOD.get(method, method)
                        ]["ops"],
                        **timed,
                    }
                )
            bar.update()
    res["speedups"] = report.speedups(res["dense"])


# --------------------------------------------------------------------------------------------
def run(opt: Options, source: str = "python -m bench") -> dict[str, Any]:
    """The whole sweep; returns the results dictionary (``bench.report``)."""
    res = report.new_results(source, machine.machine_info())
    res["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    res["options"] = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in opt.__dict__.items()
        if k not in ("notes", "progress")
    }
    res["notes"] += opt.notes
    m = res["machine"]
    m["load_average_start"] = machine.load_average()
    t0 = time.perf_counter()
    peer = (
        peer_mod.open_peer(opt.peer_process, machine.threads())
        if (opt.kernels or opt.dense)
        else None
    )
    try:
        if peer is not None:
            m["peer"] = peer.info()
        measure_references(res, opt)
        if opt.quick:
            res["notes"].append(
                "quick mode: tiny sizes, references on small arrays (not the peaks)"
            )
        if opt.kernels:
            run_kernels(res, opt, peer)
            measure_references(res, opt)
        if opt.dense:
            run_dense(res, opt, peer)
            measure_references(res, opt)
    finally:
        if peer is not None:
            peer.close()
    for row in res["throughput"]:
        report.set_ceilings(row, res["reference"]["sgemm_gflops"], res["reference"]["copy_gbs"])
    res["seconds"] = time.perf_counter() - t0
    m["load_average_end"] = machine.load_average()
    m["import_order"] = machine.import_order()
    m["thread_settings"] = machine.thread_settings()
    res["notes"] += report.standard_notes(res, opt.rounds, opt.patch_rounds, opt.fcn_shifts)
    for w in report.ceiling_warnings(res):
        res["warnings"].append(w)
        print(f"warning: {w}", file=sys.stderr)
    for when, key in (("start", "load_average_start"), ("end", "load_average_end")):
        w = machine.load_warning(m[key], machine.threads(), when)
        if w:
            res["warnings"].append(w)
            print(f"warning: {w}", file=sys.stderr)
    return res


def parse_list(text: str | Iterable[Any], kind: type = str) -> tuple[Any, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(kind(s) for s in (str(i).strip() for i in items) if s)
