"""The numbers of a benchmark run: one results dictionary, its JSON file and its Markdown tables.

Results dictionary (what ``python -m bench`` writes as ``results.json`` and what
``python -m bench plot`` builds from a pytest-benchmark JSON)::

    {"schema": "cnncore-bench/1", "source": ..., "date": "YYYY-MM-DD HH:MM UTC", "machine": {...},
     "reference": {"sgemm_gflops": float | None, "copy_gbs": float | None,
                   "fma_gflops": float | None, "fma_peak": {...} (bench.fma.peak: measured
                   or estimated, with its "basis"), "*_readings": [...]},
     "throughput": [throughput rows], "dense": [dense rows], "speedups": [speedup rows],
     "notes": [str, ...], "warnings": [str, ...]}

Times are medians of interleaved rounds; ``seconds_min`` / ``seconds_max`` keep the spread
(rows without them, e.g. from pytest-benchmark, show no spread).

Throughput row (a kernel on one configuration, one implementation), also the ``extra_info`` the
kernel suites write into pytest-benchmark (``kernel``, ``direction``, ``config``, ``impl`` and one
of ``flops`` / ``bytes`` are the keys to set; the rest is derived)::

    kernel: "conv2d" | "max_pool2d" | ...;  direction: "forward" | "backward";  config: str
    impl: "cnncore" | "torch";  seconds: fastest time;  flops / gflops  or  bytes / gbs
    sgemm_peak_gflops / copy_bandwidth_gbs: the ceiling measured in the same run;  fraction_of_peak

Dense row (one method on one network and image size; ``extra_info`` of the dense suite)::

    network, patch_size, image_size (H = W), pass ("forward" | "backward"),
    method ("patchwise" | "fcn" | "dsparse"), seconds (for the whole image),
    pixels, timed_pixels (patchwise on a sample: timed_pixels < pixels, seconds scaled linearly),
    ops_per_pixel (multiply-adds per output pixel, from the cost model; optional)

Speedup row (derived: patch scanning time / method time on the same network, size and pass)::

    network, patch_size, image_size, pass, method, speedup, speedup_min / speedup_max (from the
    rounds' spread), theory (ops-per-pixel ratio), efficiency (speedup / theory),
    speedup_vs_torch_patchwise, patchwise_scaled (patch scanning timed on a sample and scaled),
    fcn_scaled (FCN timed on a sample of its passes and scaled)
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from typing import Any

SCHEMA = "cnncore-bench/1"
PEER = "torch"
OURS = "cnncore"
METHODS = ("fcn", "dsparse", "torch_dsparse", "onnx_dsparse", "torch_patchwise")
BASELINE = "patchwise"
PASSES = ("forward", "backward")


# --------------------------------------------------------------------------------------------
# rows
def throughput_info(
    seconds: float | None,
    kernel: str,
    direction: str,
    config: str,
    impl: str,
    flops: float | None = None,
    bytes: float | None = None,  # noqa: A002 - the natural name of the quantity
    sgemm_peak_gflops: float | None = None,
    copy_bandwidth_gbs: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A throughput row: the given keys plus ``gflops``/``gbs`` and ``fraction_of_peak``."""
    if (flops is None) == (bytes is None):
        raise ValueError("give exactly one of flops (compute-bound) or bytes (bandwidth-bound)")
    row: dict[str, Any] = {
        "kernel": kernel,
        "direction": direction,
        "config": config,
        "impl": impl,
        "seconds": seconds,
        **extra,
    }
    if flops is not None:
        row["flops"] = float(flops)
        row["gflops"] = flops / seconds / 1e9 if seconds else None
    else:
        row["bytes"] = float(bytes)
        row["gbs"] = bytes / seconds / 1e9 if seconds else None
    return set_ceilings(row, sgemm_peak_gflops, copy_bandwidth_gbs)


def set_ceilings(
    row: dict[str, Any], sgemm_peak_gflops: float | None, copy_bandwidth_gbs: float | None
) -> dict[str, Any]:
    """Set a throughput row's ceiling (sgemm peak for FLOP rows, copy bandwidth for byte rows)
    and its ``fraction_of_peak``; returns the row."""
    row.pop("fraction_of_peak", None)
    value, unit = rate(row)
    if unit == "GFLOP/s":
        row["sgemm_peak_gflops"], ceiling = sgemm_peak_gflops, sgemm_peak_gflops
    else:
        row["copy_bandwidth_gbs"], ceiling = copy_bandwidth_gbs, copy_bandwidth_gbs
    if value and ceiling:
        row["fraction_of_peak"] = value / ceiling
    return row


def rate(row: dict[str, Any]) -> tuple[float | None, str]:
    """The row's throughput and its unit: (GFLOP/s, "GFLOP/s") or (GB/s, "GB/s")."""
    if row.get("flops") is not None:
        return row.get("gflops"), "GFLOP/s"
    return row.get("gbs"), "GB/s"


def speedups(dense_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speedup of each method over our patch scanning (same network, size, pass), its spread
    from the rounds, the theoretical ratio and the efficiency (measured / theory)."""
    base: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in dense_rows:
        if r["method"] in (BASELINE, "torch_patchwise"):
            base[(r["network"], r["image_size"], r["pass"])][r["method"]] = r
    out = []
    for r in dense_rows:
        bases = base.get((r["network"], r["image_size"], r["pass"]), {})
        p = bases.get(BASELINE)
        if r["method"] == BASELINE or p is None or not r.get("seconds"):
            continue
        theory = None
        if p.get("ops_per_pixel") and r.get("ops_per_pixel"):
            theory = p["ops_per_pixel"] / r["ops_per_pixel"]
        speedup = p["seconds"] / r["seconds"]
        row = {
            "network": r["network"],
            "patch_size": r["patch_size"],
            "image_size": r["image_size"],
            "pass": r["pass"],
            "method": r["method"],
            "speedup": speedup,
            "speedup_min": p.get("seconds_min", p["seconds"]) / r.get("seconds_max", r["seconds"]),
            "speedup_max": p.get("seconds_max", p["seconds"]) / r.get("seconds_min", r["seconds"]),
            "theory": theory,
            "efficiency": speedup / theory if theory else None,
            "patchwise_scaled": p.get("timed_pixels", p.get("pixels")) != p.get("pixels"),
            "patchwise_timed_pixels": p.get("timed_pixels"),
            "fcn_scaled": r.get("timed_passes", 0) < r.get("passes", 0),
            "pixels": p.get("pixels"),
        }
        tp = bases.get("torch_patchwise")
        if tp and tp.get("seconds") and r["method"] != "torch_patchwise":
            row["speedup_vs_torch_patchwise"] = tp["seconds"] / r["seconds"]
        out.append(row)
    return out


def new_results(source: str, machine: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "source": source,
        "machine": machine or {},
        "reference": {"sgemm_gflops": None, "copy_gbs": None, "fma_gflops": None},
        "throughput": [],
        "dense": [],
        "speedups": [],
        "notes": [],
        "warnings": [],
    }


EFFICIENCY_NOTE = (
    "efficiency = measured speedup / theoretical ratio of operations. It exceeds 1 where patch "
    "scanning runs less efficiently per operation than the dense method: a batch of small "
    "patches (15x15 for toy15) makes small, badly shaped GEMMs and spends much of its time "
    "outside them (gathering patches, per-batch overheads), while the dense networks run large "
    "convolutions near the machine's throughput. The theory counts operations, not their rate."
)
CEILING_NOTE = (
    "ceilings: the sgemm peak (OpenBLAS through NumPy) and the copy bandwidth are the best of "
    "several readings in the run (start, between the parts, end). The FMA peak is measured the "
    "same way: an FMA loop compiled at run time, one thread per core (without a C compiler, "
    "cores x FP32 FLOP per cycle x /proc/cpuinfo's clock, an estimate the report labels). "
    "oneDNN's direct convolutions (PyTorch) can exceed the sgemm peak because OpenBLAS's sgemm "
    "itself stays below the FMA peak; above the FMA peak, only an algorithm doing fewer "
    "operations than direct convolution (Winograd: its 'effective' GFLOP/s count direct FLOPs) "
    "can be."
)


def _row_name(r: dict[str, Any]) -> str:
    return (
        f"{r['kernel']} {r['direction']} {r['config']} ({r['impl']}, "
        f"{100 * r['fraction_of_peak']:.0f}%)"
    )


def above_ceiling(res: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The throughput rows above their ceiling, by reason: ``winograd`` (effective GFLOP/s of an
    algorithm doing fewer multiplies, or of a network with Winograd layers), ``below_fma`` (above
    OpenBLAS's sgemm rate but not above the FMA peak), ``cache`` (a byte row faster than the copy
    bandwidth: data kept in cache) and ``unexplained`` (a FLOP row above the FMA peak too, or
    above sgemm with no FMA peak known)."""
    fma = (res.get("reference") or {}).get("fma_gflops")
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in res.get("throughput", []):
        if (r.get("fraction_of_peak") or 0) <= 1:
            continue
        value, unit = rate(r)
        if unit == "GB/s":
            out["cache"].append(r)
        elif "winograd" in (r.get("algorithm") or "").split("+"):  # a network: any layer
            out["winograd"].append(r)
        elif fma and value <= fma:
            out["below_fma"].append(r)
        else:
            out["unexplained"].append(r)
    return out


def ceiling_notes(res: dict[str, Any]) -> list[str]:
    """One note per reason a row stands above its ceiling (``above_ceiling``)."""
    fma = (res.get("reference") or {}).get("fma_gflops")
    by = above_ceiling(res)
    reasons = {
        "winograd": "Winograd: its GFLOP/s count the direct convolution's FLOPs, and it does "
        "fewer multiplies (an effective rate, which may exceed even the FMA peak)",
        "below_fma": f"below the FMA peak ({_fmt(fma, '.0f')} GFLOP/s): the sgemm peak is "
        "OpenBLAS's sgemm rate, not the machine's arithmetic peak, and oneDNN's direct "
        "convolutions get closer to the FMA peak",
        "cache": "a byte row above the copy bandwidth keeps part of its data in cache (the copy "
        "of a large array goes through memory)",
        "unexplained": "above the FMA peak as well (or no FMA peak known): not explained by the "
        "algorithm; a ceiling was probably measured low (load during its reading)",
    }
    return [
        f"above the sgemm/copy ceiling: {', '.join(map(_row_name, by[k]))}. Why: {why}"
        for k, why in reasons.items()
        if by.get(k)
    ]


def ceiling_warnings(res: dict[str, Any]) -> list[str]:
    """Warnings for figures above their ceiling without an explanation, and for an FMA peak
    below the sgemm rate measured in the same run (then the FMA peak is wrong)."""
    ref = res.get("reference") or {}
    out = []
    fma, sgemm = ref.get("fma_gflops"), ref.get("sgemm_gflops")
    if fma and sgemm and sgemm > fma:
        how = "measured" if (ref.get("fma_peak") or {}).get("measured") else "estimated"
        out.append(
            f"the sgemm peak ({sgemm:.0f} GFLOP/s) exceeds the {how} FMA peak ({fma:.0f} "
            "GFLOP/s): the FMA peak is too low (a nominal clock, or load during its reading)"
        )
    bad = above_ceiling(res).get("unexplained")
    if bad:
        out.append("above the FMA peak with no explanation: " + ", ".join(map(_row_name, bad)))
    return out


def standard_notes(res: dict[str, Any], rounds: int, patch_rounds: int, fcn_shifts: int) -> list:
    """The notes every sweep carries: how the figures were measured and how to read them."""
    notes = [
        f"every time is the median of {rounds} interleaved rounds (ours, then the peer, the "
        "order flipping each round), [min-max] over the rounds; patch scanning: "
        f"{patch_rounds} rounds on one sample of pixels",
        CEILING_NOTE,
    ]
    notes += ceiling_notes(res)
    peer = (res.get("machine") or {}).get("peer") or {}
    if peer:
        where = "a process of its own" if peer.get("mode", "").startswith("own") else "this process"
        notes.append(
            f"PyTorch ran in {where}"
            f" ({peer.get('mode')}; import order {peer.get('import_order')}, libgomp wait policy "
            f"{peer.get('libgomp_wait_policy')}, {peer.get('torch_num_threads')} threads); ours "
            f"with import order {res['machine'].get('import_order')}, libgomp wait policy "
            f"{(res['machine'].get('thread_settings') or {}).get('libgomp_wait_policy')}"
        )
    if res.get("speedups"):
        note = sampling_note(res["speedups"])
        if note:
            notes.append(note)
        if any(s.get("fcn_scaled") for s in res["speedups"]):
            notes.append(
                f"FCN shift and stitch: at most {fcn_shifts} of the S*S passes are timed "
                "(evenly spread) and scaled to all of them"
            )
        notes.append(
            "backward = forward + backward of a training step with every pixel counted; "
            "theory = operations per pixel of patch scanning / of the method "
            "(cnncore.dense.cost, borders included), the same for both passes"
        )
        notes.append(EFFICIENCY_NOTE)
    return notes


# --------------------------------------------------------------------------------------------
# pytest-benchmark JSON -> results
def from_pytest_benchmark(data: dict[str, Any], source: str = "pytest-benchmark") -> dict[str, Any]:
    """Results dictionary from a pytest-benchmark JSON (``--benchmark-json``).

    Kernel rows are the benchmarks whose ``extra_info`` has ``kernel`` and ``flops`` or ``bytes``
    (GPU rows, with ``device``, become kernels of their own); dense rows those with ``method``,
    ``image_size`` and ``pass``; the references are the best rates of the ``impl="numpy"`` rows
    (sgemm: ``flops``, a large copy: ``bytes``) and of the ceilings the kernel rows carry.
    The time used is each benchmark's fastest round (``stats.min``), or for dense rows the
    ``seconds`` their suite recorded for the whole image.
    """
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ValueError("not a pytest-benchmark JSON: it has no 'benchmarks' list")
    res = new_results(source, {"pytest_benchmark": data.get("machine_info", {})})
    peaks: dict[str, list[float]] = defaultdict(list)
    skipped = 0
    for b in data["benchmarks"]:
        info = dict(b.get("extra_info") or {})
        seconds = (b.get("stats") or {}).get("min")
        if not seconds:
            skipped += 1
            continue
        if "method" in info and "image_size" in info and "pass" in info:
            # the suite's own whole-image seconds if it gives them (patch scanning scaled from a
            # sample), else the fastest round
            info.setdefault("seconds", seconds * info.get("scale", 1.0))
            info.setdefault("pixels", info["image_size"] ** 2)
            res["dense"].append(info)
        elif "kernel" in info and ("flops" in info or "bytes" in info):
            kw = {k: info.get(k, "") for k in ("kernel", "direction", "config", "impl")}
            kw["config"] = kw["config"] or b.get("name", "")
            extra = {
                k: v
                for k, v in info.items()
                if k not in kw and k not in ("seconds", "gflops", "gbs", "fraction_of_peak")
            }
            if info.get("device"):  # a GPU row: its own panel, the CPU ceilings do not apply
                kw["kernel"] = f"{kw['kernel']} ({info['device']})"
                extra["sgemm_peak_gflops"] = extra["copy_bandwidth_gbs"] = None
            row = throughput_info(seconds=seconds, **kw, **extra)
            if row["impl"] == "numpy" and row.get("gflops"):  # bench_reference: sgemm
                peaks["sgemm"].append(row["gflops"])
            elif row["impl"] == "numpy" and row.get("gbs"):  # a large copy
                peaks["copy"].append(row["gbs"])
            else:
                res["throughput"].append(row)
                if row.get("sgemm_peak_gflops"):
                    peaks["sgemm_row"].append(row["sgemm_peak_gflops"])
                if row.get("copy_bandwidth_gbs"):
                    peaks["copy_row"].append(row["copy_bandwidth_gbs"])
        else:
            skipped += 1
    ref = res["reference"]
    # the best rate seen in the run (the reference rows and the ceilings the kernel rows carry)
    ref["sgemm_gflops"] = max(peaks["sgemm"] + peaks["sgemm_row"] or [None], key=_none_low)
    ref["copy_gbs"] = max(peaks["copy"] + peaks["copy_row"] or [None], key=_none_low)
    res["speedups"] = speedups(res["dense"])
    if skipped:
        res["notes"].append(f"{skipped} benchmark(s) without throughput or dense info not plotted")
    return res


def _none_low(x: float | None) -> float:
    return -math.inf if x is None else x


# --------------------------------------------------------------------------------------------
# files
def write_json(results: dict[str, Any], path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1, sort_keys=False, default=_jsonable)
        f.write("\n")


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def load_results(path: str) -> dict[str, Any]:
    """A results dictionary from ``path``: our own ``results.json`` or a pytest-benchmark JSON."""
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, dict) and data.get("schema") == SCHEMA:
        return data
    return from_pytest_benchmark(data, source=f"pytest-benchmark {os.path.basename(path)}")


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One results dictionary from several runs (e.g. ``python -m bench`` and ``python -m bench
    record``): rows concatenated, speedups recomputed, references the best of the runs."""
    if len(results) == 1:
        return results[0]
    out = new_results(" + ".join(r.get("source", "?") for r in results), results[0].get("machine"))
    dates = [r["date"] for r in results if r.get("date")]
    if dates:
        out["date"] = " and ".join(dict.fromkeys(dates))
    for r in results:
        m = r.get("machine") or {}
        if r is not results[0] and m.get("load_average_start") is not None:
            out["notes"].append(
                f"{r.get('source')}: 1-minute load average {m['load_average_start']} at the "
                f"start, {m.get('load_average_end')} at the end"
            )
        out["throughput"] += r.get("throughput", [])
        out["dense"] += r.get("dense", [])
        seen = {n.split(" (")[0] for n in out["notes"]}  # one of each kind of note
        out["notes"] += [n for n in r.get("notes", []) if n.split(" (")[0] not in seen]
        for key, value in (r.get("reference") or {}).items():
            if isinstance(value, (int, float)):  # ceilings: the best reading of the runs
                out["reference"][key] = max(value, out["reference"].get(key) or value)
            elif value is not None:  # descriptions (readings, FMA peak's derivation): the first
                out["reference"].setdefault(key, value)
    out["speedups"] = speedups(out["dense"])
    note = sampling_note(out["speedups"])
    out["notes"] = [n for n in out["notes"] if not n.startswith(SAMPLING)] + (
        [note] if note else []
    )
    return out


SAMPLING = "patch scanning is timed on a random sample of pixels"


def sampling_note(rows: list[dict[str, Any]]) -> str | None:
    """The note that says which speedups rest on patch scanning timed on a sample (or None)."""
    scaled = [r for r in rows if r.get("patchwise_scaled")]
    if not scaled:
        return None
    return (
        f"{SAMPLING} (at least one batch, enough for the time budget) and scaled linearly to "
        f"the whole image ({len(scaled)} of {len(rows)} speedups)"
    )


# --------------------------------------------------------------------------------------------
# Markdown
def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.1f}" if s * 1e3 >= 10 else f"{s * 1e3:.2f}"


def _ms_spread(row: dict[str, Any] | None) -> str:
    """``median [min-max]`` in ms of a row (just the median when it has no spread)."""
    if not row or row.get("seconds") is None:
        return "-"
    if row.get("seconds_min") is None:
        return _ms(row["seconds"])
    return f"{_ms(row['seconds'])} [{_ms(row['seconds_min'])}-{_ms(row['seconds_max'])}]"


def pair_rows(rows: list[dict[str, Any]]) -> tuple[dict[tuple, dict[str, dict]], list[dict]]:
    """Rows grouped by (kernel, direction, config) into {impl: row} for ours and the peer, and
    the rows of other implementations."""
    pairs: dict[tuple, dict[str, dict]] = {}
    others = []
    for r in rows:
        if r["impl"] in (OURS, PEER):
            pairs.setdefault((r["kernel"], r["direction"], r["config"]), {})[r["impl"]] = r
        else:
            others.append(r)
    return pairs, others


def throughput_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table pairing ours and PyTorch per (kernel, direction, config), with the
    algorithm ours ran, the spread of the rounds and the ceiling.

    The last lines give, per kernel, the geometric mean of PyTorch time / our time."""
    pairs, others = pair_rows(rows)
    lines = [
        "| kernel | pass | configuration | algorithm | ours (ms) | PyTorch (ms) | PyTorch/ours "
        "| ours | PyTorch | ours / ceiling |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    ratios: dict[str, list[float]] = defaultdict(list)
    for (kernel, direction, config), p in pairs.items():
        ours, peer = p.get(OURS), p.get(PEER)
        any_row = ours or peer
        _, unit = rate(any_row)
        ratio = None
        if ours and peer and ours["seconds"] and peer["seconds"]:
            ratio = peer["seconds"] / ours["seconds"]
            ratios[kernel].append(ratio)
        ceiling = any_row.get("sgemm_peak_gflops" if unit == "GFLOP/s" else "copy_bandwidth_gbs")
        frac = ours.get("fraction_of_peak") if ours else None
        lines.append(
            f"| {kernel} | {direction} | {config} | {(ours or {}).get('algorithm', '-')} "
            f"| {_ms_spread(ours)} | {_ms_spread(peer)} | {_fmt(ratio, '.2f')} "
            f"| {_rate_str(ours)} | {_rate_str(peer)} "
            f"| {'-' if frac is None else f'{100 * frac:.0f}%'} of {_fmt(ceiling, '.0f')} {unit} |"
        )
    for r in others:
        lines.append(
            f"\n{r['kernel']} {r['config']} ({r['impl']}): {_ms(r['seconds'])} ms, {_rate_str(r)}"
        )
    for kernel, rs in ratios.items():
        gm = math.exp(sum(math.log(x) for x in rs) / len(rs))
        lines.append(
            f"\n{kernel}: geometric mean of PyTorch time / our time = {gm:.2f} over {len(rs)} pairs"
        )
    return "\n".join(lines)


def _rate_str(row: dict[str, Any] | None) -> str:
    if not row:
        return "-"
    value, unit = rate(row)
    return "-" if value is None else f"{value:.1f} {unit}"


def times(x: float | None) -> str:
    """A ratio as text: ``1234x``, ``56x``, ``3.2x``, ``0.41x``."""
    if x is None:
        return "-"
    return f"{x:.0f}x" if x >= 10 else f"{x:.2g}x"


def speedup_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of measured speedups over our patch scanning (with the rounds' spread)
    beside the theoretical ratio, the efficiency and the speedup over PyTorch patch scanning."""
    lines = [
        "| network | patch | image | pass | method | speedup (measured) | theory (ops/pixel) "
        "| efficiency | over PyTorch patch scanning | patch scanning |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for r in sorted(
        rows,
        key=lambda r: (
            r["patch_size"],
            r["network"],
            r["image_size"],
            r["pass"] != "forward",
            r["method"],
        ),
    ):
        how = (
            f"sampled {r['patchwise_timed_pixels']} of {r['pixels']} pixels, scaled"
            if r.get("patchwise_scaled")
            else "all pixels timed"
        )
        if r.get("fcn_scaled"):
            how += "; FCN passes sampled, scaled"
        spread = (
            f" [{times(r['speedup_min'])}-{times(r['speedup_max'])}]"
            if r.get("speedup_min") is not None
            else ""
        )
        lines.append(
            f"| {r['network']} | {r['patch_size']} | {r['image_size']}x{r['image_size']} "
            f"| {r['pass']} | {r['method']} | {times(r['speedup'])}{spread} "
            f"| {times(r.get('theory'))} | {_fmt(r.get('efficiency'), '.2f')} "
            f"| {times(r.get('speedup_vs_torch_patchwise'))} | {how} |"
        )
    return "\n".join(lines)


def peer_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of our d-sparse network against the same network in PyTorch and in ONNX
    Runtime (median seconds [min-max], peer time / our time)."""
    by: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        by[(r["network"], r["image_size"], r["pass"])][r["method"]] = r
    lines = [
        "| network | image | pass | d-sparse (s) | PyTorch (s) | PyTorch/ours | ONNX Runtime (s) "
        "| ONNX Runtime/ours |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for (net, size, pss), m in by.items():
        ours = m.get("dsparse")
        if not ours or not ({"torch_dsparse", "onnx_dsparse"} & set(m)):
            continue
        cells = []
        for peer in ("torch_dsparse", "onnx_dsparse"):
            r = m.get(peer)
            cells.append(_s_spread(r))
            cells.append(_fmt(r["seconds"] / ours["seconds"], ".2f") if r else "-")
        lines.append(
            f"| {net} | {size}x{size} | {pss} | {_s_spread(ours)} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def _s_spread(r: dict[str, Any] | None) -> str:
    if not r:
        return "-"
    if r.get("seconds_min") is None:
        return f"{r['seconds']:.3g}"
    return f"{r['seconds']:.3g} [{r['seconds_min']:.3g}-{r['seconds_max']:.3g}]"


def dense_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the raw dense times (seconds for the whole image, [min-max])."""
    lines = [
        "| network | image | pass | method | seconds [min-max] | timed pixels | ops/pixel |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        spread = (
            f" [{r['seconds_min']:.4g}-{r['seconds_max']:.4g}]"
            if r.get("seconds_min") is not None
            else ""
        )
        lines.append(
            f"| {r['network']} | {r['image_size']}x{r['image_size']} | {r['pass']} "
            f"| {r['method']} | {r['seconds']:.4g}{spread} "
            f"| {r.get('timed_pixels', r.get('pixels'))} "
            f"| {_fmt(r.get('ops_per_pixel'), '.3g')} |"
        )
    return "\n".join(lines)


def _blas(m: dict[str, Any]) -> str:
    pools = (m.get("libraries") or {}).get("threadpools") or []
    blas = [p for p in pools if p.get("internal_api") in ("openblas", "mkl", "blis")]
    if not blas:
        return "?"
    return ", ".join(
        f"{p['internal_api']} {p.get('version')} ({p.get('num_threads')} threads)" for p in blas
    )


def _fma_basis(ref: dict[str, Any]) -> str:
    f = ref.get("fma_peak") or {}
    if not f.get("gflops"):
        return ""
    if f.get("basis"):
        return f" ({f['basis']})"
    return (  # older results: ISA x clock
        f" ({f['cores']} cores x {f['flops_per_cycle_per_core']} FLOP/cycle, {f['isa']}, x "
        f"{f['clock_ghz']:.2f} GHz from {f['clock_source']})"
    )


def markdown(results: dict[str, Any]) -> str:
    """The whole report: machine, references, throughput, speedups, raw dense times, notes."""
    ref = results.get("reference", {})
    m = results.get("machine", {})
    out = [f"# cnncore benchmarks ({results.get('source', '')})", ""]
    if m.get("processor"):
        out.append(
            f"Machine: {m.get('processor')} ({', '.join(m.get('isa_flags') or [])}), "
            f"{m.get('usable_cores')} usable cores, {m.get('threads')} threads (ours and "
            f"PyTorch); NumPy {m.get('numpy')}, BLAS {_blas(m)}, PyTorch {m.get('torch')}, "
            f"ONNX Runtime {m.get('onnxruntime')}; import order {m.get('import_order')}."
        )
        if m.get("load_average_start") is not None:
            out.append(
                f"1-minute load average {m['load_average_start']} at the start, "
                f"{m.get('load_average_end')} at the end, on {m.get('usable_cores')} cores (the "
                "run itself adds up to its thread count; more means other processes shared the "
                "machine and slowed both sides)."
            )
    elif (m.get("pytest_benchmark") or {}).get("cpu"):
        pb = m["pytest_benchmark"]
        out.append(
            f"Machine: {pb['cpu'].get('brand_raw', '?')}, {pb['cpu'].get('count', '?')} cores; "
            f"Python {pb.get('python_version', '?')}."
        )
    out.append(
        f"References measured in the same run: sgemm peak {_fmt(ref.get('sgemm_gflops'), '.0f')} "
        f"GFLOP/s, copy bandwidth {_fmt(ref.get('copy_gbs'), '.1f')} GB/s (best readings), "
        f"FMA peak {_fmt(ref.get('fma_gflops'), '.0f')} GFLOP/s{_fma_basis(ref)}."
    )
    for w in results.get("warnings") or []:
        out.append(f"**Warning:** {w}.")
    if results.get("throughput"):
        out += ["", "## Kernel throughput", "", throughput_table(results["throughput"])]
    if results.get("speedups"):
        out += ["", "## Speedup over patch scanning", "", speedup_table(results["speedups"])]
    peers = peer_table(results.get("dense") or [])
    if peers:
        out += ["", "## d-sparse against PyTorch and ONNX Runtime (same network)", "", peers]
    if results.get("dense"):
        out += ["", "## Dense inference times", "", dense_table(results["dense"])]
    if results.get("notes"):
        out += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    return "\n".join(out) + "\n"
