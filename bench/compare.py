"""Row-by-row reproducibility check of two benchmark runs.

``python -m bench compare OLD/results.json NEW/results.json [--top 10]`` prints, for every timed
row present in both runs (kernel throughput rows: kernel, pass, configuration, implementation;
dense rows: network, image size, pass, method, batch), the two medians with their [min-max]
spreads, the ratio NEW/OLD, and whether NEW's median lies within OLD's spread and OLD's within
NEW's.  A summary follows: how many rows lie within the other run's spread, the geometric mean of
the ratios, the largest deviations and the rows only one run has; and per kernel and pass the
geometric mean of PyTorch time / our time in both runs (the figure that should carry over
between machines).  Before the rows it warns when the two runs come from different machines or
settings (CPU model, family, ISA flags, cores, threads, thread settings, library versions,
import order, the peer's process, the sweep's options) or when either ran under a load above its
thread count: then a deviation says as much about the machine as about the code.  It measures
nothing and asserts nothing; the exit status is 0 unless a file is unreadable.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from bench import report
from bench.machine import THREAD_ENV_KEYS

# machine facts whose difference makes two runs incomparable row by row (key, what it is)
MACHINE_KEYS = (
    ("processor", "CPU model"),
    ("vendor", "CPU vendor"),
    ("cpu_family", "CPU family"),
    ("isa_flags", "ISA flags"),
    ("machine", "architecture"),
    ("usable_cores", "usable cores"),
    ("threads", "threads"),
    ("python", "Python"),
    ("numpy", "NumPy"),
    ("torch", "PyTorch"),
    ("onnxruntime", "ONNX Runtime"),
    ("cnncore", "cnncore"),
    ("import_order", "import order"),
)
THREAD_KEYS = (
    *THREAD_ENV_KEYS,  # the keys machine.thread_settings records
    "libgomp_wait_policy",
    "threads",
    "torch_num_threads",
)
PEER_KEYS = ("mode", "libgomp_wait_policy", "torch_num_threads", "import_order")
OPTION_KEYS = ("quick", "rounds", "patch_rounds", "patch_budget", "fcn_shifts", "peer_process")


# --------------------------------------------------------------------------------------------
# rows
def timed_rows(results: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
    """Every timed row of a results dictionary by its identity: ``{key: {"label", "median",
    "min", "max"}}`` (``min``/``max`` None for rows without a spread, e.g. pytest-benchmark's)."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in results.get("throughput") or []:
        key = ("kernel", r["kernel"], r["direction"], r["config"], r["impl"])
        label = f"{r['kernel']} {r['direction']} {r['config']} ({r['impl']})"
        _put(out, key, label, r)
    for r in results.get("dense") or []:
        key = ("dense", r["network"], r["image_size"], r["pass"], r["method"], r.get("batch", 1))
        label = f"{r['network']} {r['image_size']}x{r['image_size']} {r['pass']} {r['method']}"
        _put(out, key, label, r)
    return out


def _put(out: dict, key: tuple, label: str, r: dict[str, Any]) -> None:
    if not r.get("seconds"):
        return
    out[key] = {
        "label": label,
        "median": r["seconds"],
        "min": r.get("seconds_min"),
        "max": r.get("seconds_max"),
    }


def within(x: float, row: dict[str, Any]) -> bool | None:
    """Whether ``x`` lies within the row's [min-max] (None when the row has no spread)."""
    if row.get("min") is None or row.get("max") is None:
        return None
    return row["min"] <= x <= row["max"]


def compare_rows(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per row present in both runs, in OLD's order: ``label``, ``old``, ``new`` (the
    timed rows), ``ratio`` (NEW median / OLD median), ``new_in_old`` and ``old_in_new``."""
    a, b = timed_rows(old), timed_rows(new)
    out = []
    for key, o in a.items():
        n = b.get(key)
        if n is None:
            continue
        out.append(
            {
                "key": key,
                "label": o["label"],
                "old": o,
                "new": n,
                "ratio": n["median"] / o["median"],
                "new_in_old": within(n["median"], o),
                "old_in_new": within(o["median"], n),
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# what differs between the runs
def _fmt_value(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    return str(v)


def _blas(m: dict[str, Any]) -> list[str]:
    pools = (m.get("libraries") or {}).get("threadpools") or []
    return sorted(
        f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
        for p in pools
    )


def machine_warnings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between the machines, settings and loads of the two runs, one line each."""
    mo, mn = old.get("machine") or {}, new.get("machine") or {}
    out = []

    def differ(what: str, a: Any, b: Any) -> None:
        if a != b:
            out.append(f"different {what}: {_fmt_value(a)} (OLD) against {_fmt_value(b)} (NEW)")

    for key, what in MACHINE_KEYS:
        differ(what, mo.get(key), mn.get(key))
    differ("BLAS thread pools", _blas(mo), _blas(mn))
    to, tn = mo.get("thread_settings") or {}, mn.get("thread_settings") or {}
    for key in THREAD_KEYS:
        differ(f"thread setting {key}", to.get(key), tn.get(key))
    po, pn = mo.get("peer") or {}, mn.get("peer") or {}
    for key in PEER_KEYS:
        differ(f"peer {key}", po.get(key), pn.get(key))
    oo, on = old.get("options") or {}, new.get("options") or {}
    if oo and on:
        for key in OPTION_KEYS:
            differ(f"option {key}", oo.get(key), on.get(key))
    for name, res, m in (("OLD", old, mo), ("NEW", new, mn)):
        n = m.get("threads") or 0
        for when in ("start", "end"):
            load = m.get(f"load_average_{when}")
            if load is not None and n and load > n:
                out.append(
                    f"{name} ran under load: 1-minute load average {load} at the {when}, above "
                    f"its {n} threads"
                )
        if res.get("warnings"):
            out.append(f"{name} carries {len(res['warnings'])} warning(s) of its own")
    return out


def reference_lines(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The ceilings of both runs side by side (sgemm peak, copy bandwidth, FMA peak)."""
    ro, rn = old.get("reference") or {}, new.get("reference") or {}
    out = []
    for key, what, unit in (
        ("sgemm_gflops", "sgemm peak", "GFLOP/s"),
        ("copy_gbs", "copy bandwidth", "GB/s"),
        ("fma_gflops", "FMA peak", "GFLOP/s"),
    ):
        a, b = ro.get(key), rn.get(key)
        if a is None and b is None:
            continue
        ratio = f" (NEW/OLD {b / a:.2f})" if a and b else ""
        out.append(f"{what}: {_num(a)} (OLD) against {_num(b)} {unit} (NEW){ratio}")
    return out


def peer_ratios(results: dict[str, Any]) -> dict[tuple, list[float]]:
    """PyTorch time / our time of every kernel pair, grouped by (kernel, pass)."""
    pairs, _ = report.pair_rows(results.get("throughput") or [])
    out: dict[tuple, list[float]] = {}
    for (kernel, direction, _config), p in pairs.items():
        ours, peer = p.get(report.OURS), p.get(report.PEER)
        if ours and peer and ours.get("seconds") and peer.get("seconds"):
            out.setdefault((kernel, direction), []).append(peer["seconds"] / ours["seconds"])
    return out


def ratio_lines(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Per kernel and pass, the geometric mean of PyTorch time / our time in both runs: the
    figure that should carry over to another machine when the times themselves do not."""
    a, b = peer_ratios(old), peer_ratios(new)
    out = []
    for key in a:
        if key in b:
            ga, gb = _geomean(a[key]), _geomean(b[key])
            out.append(
                f"{key[0]} {key[1]}: {ga:.2f} (OLD, {len(a[key])} pairs) against {gb:.2f} "
                f"(NEW, {len(b[key])} pairs), NEW/OLD {gb / ga:.2f}"
            )
    return out


def _geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}" if x >= 10 else f"{x:.3g}"


# --------------------------------------------------------------------------------------------
# summary and text
def summarize(rows: list[dict[str, Any]], top: int = 10) -> dict[str, Any]:
    """Counts of rows within the other run's spread, the geometric mean of the ratios and the
    ``top`` largest deviations (by the size of log(ratio))."""
    with_spread = [r for r in rows if r["new_in_old"] is not None and r["old_in_new"] is not None]
    gm = _geomean([r["ratio"] for r in rows]) if rows else None
    return {
        "rows": len(rows),
        "with_spread": len(with_spread),
        "new_in_old": sum(bool(r["new_in_old"]) for r in with_spread),
        "old_in_new": sum(bool(r["old_in_new"]) for r in with_spread),
        "either": sum(bool(r["new_in_old"] or r["old_in_new"]) for r in with_spread),
        "geomean_ratio": gm,
        "largest": sorted(rows, key=lambda r: -abs(math.log(r["ratio"])))[:top],
    }


def compare(old: dict[str, Any], new: dict[str, Any], top: int = 10) -> dict[str, Any]:
    """The whole comparison: ``warnings``, ``references``, ``rows``, ``summary`` and the number
    of rows only OLD (``only_old``) or only NEW (``only_new``) has."""
    rows = compare_rows(old, new)
    a, b = timed_rows(old), timed_rows(new)
    return {
        "old_source": old.get("source"),
        "new_source": new.get("source"),
        "warnings": machine_warnings(old, new),
        "references": reference_lines(old, new),
        "peer_ratios": ratio_lines(old, new),
        "rows": rows,
        "summary": summarize(rows, top),
        "only_old": len(set(a) - set(b)),
        "only_new": len(set(b) - set(a)),
    }


def _spread(r: dict[str, Any]) -> str:
    """``median [min-max]`` in ms (s from 10 s on); just the median without a spread."""
    scale, unit = (1.0, "s") if r["median"] >= 10 else (1e3, "ms")
    if r.get("min") is None:
        return f"{r['median'] * scale:.3g} {unit}"
    return f"{r['median'] * scale:.3g} [{r['min'] * scale:.3g}-{r['max'] * scale:.3g}] {unit}"


def _yes(x: bool | None) -> str:
    return "-" if x is None else "yes" if x else "no"


def text(c: dict[str, Any], old_name: str = "OLD", new_name: str = "NEW") -> str:
    """The comparison as Markdown: warnings, references, the row table and the summary."""
    out = [f"# Reproducibility: NEW {new_name} against OLD {old_name}", ""]
    out.append(f"OLD: {c['old_source']}; NEW: {c['new_source']}.")
    if c["warnings"]:
        out += ["", "## Warnings: the runs differ in more than the code", ""]
        out += [f"- **warning:** {w}" for w in c["warnings"]]
    if c["references"]:
        out += ["", "## Ceilings", ""] + [f"- {line}" for line in c["references"]]
    if c["peer_ratios"]:
        out += ["", "## PyTorch time / our time (geometric mean per kernel and pass)", ""]
        out += [f"- {line}" for line in c["peer_ratios"]]
    out += [
        "",
        "## Rows in both runs",
        "",
        "| row | OLD median [min-max] | NEW median [min-max] | NEW/OLD | NEW in OLD's spread "
        "| OLD in NEW's spread |",
        "|---|---:|---:|---:|:-:|:-:|",
    ]
    for r in c["rows"]:
        out.append(
            f"| {r['label']} | {_spread(r['old'])} | {_spread(r['new'])} | {r['ratio']:.2f} "
            f"| {_yes(r['new_in_old'])} | {_yes(r['old_in_new'])} |"
        )
    s = c["summary"]
    out += ["", "## Summary", ""]
    if not s["rows"]:
        out.append("No row is present in both runs.")
    else:
        out.append(
            f"- {s['rows']} rows in both runs ({c['only_old']} only in OLD, {c['only_new']} only "
            f"in NEW); {s['with_spread']} of them have a spread in both"
        )
        n = s["with_spread"]
        out.append(
            f"- NEW's median within OLD's spread: {s['new_in_old']} of {n}; OLD's within NEW's: "
            f"{s['old_in_new']} of {n}; either: {s['either']} of {n}"
        )
        out.append(f"- geometric mean of NEW/OLD: {s['geomean_ratio']:.2f}")
        out.append(
            "- largest deviations (NEW/OLD): "
            + "; ".join(f"{r['label']} {r['ratio']:.2f}" for r in s["largest"])
        )
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench compare",
        description="Compare two benchmark runs row by row: medians, spreads, ratios, and what "
        "differs between their machines.",
    )
    p.add_argument("old", help="the earlier results.json (or pytest-benchmark JSON)")
    p.add_argument("new", help="the later results.json (or pytest-benchmark JSON)")
    p.add_argument("--top", type=int, default=10, help="largest deviations listed (%(default)s)")
    a = p.parse_args(argv)
    c = compare(report.load_results(a.old), report.load_results(a.new), a.top)
    print(text(c, a.old, a.new), end="")
    for w in c["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return 0
