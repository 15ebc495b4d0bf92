"""The three plots of a results dictionary (see ``bench.report``), as small PNGs (matplotlib, Agg).

1. ``speedup_vs_image_size.png``: speedup over patch scanning against the image size, FCN and
   d-sparse, forward and forward+backward, one panel per network, the theoretical ratio dotted.
2. ``speedup_vs_patch_size.png``: the same against the patch size of the networks, at one image
   size.
3. ``kernel_throughput.png``: GFLOP/s (conv) or GB/s (pooling) of ours and PyTorch per
   configuration, with the sgemm peak / copy bandwidth measured in the same run as a reference
   line.

Where patch scanning was timed on a sample of pixels and scaled linearly, the markers are hollow and
the figure says so.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.report import OURS, PEER, rate  # noqa: E402

METHOD_STYLE = {
    "dsparse": ("C0", "d-sparse"),
    "fcn": ("C1", "FCN"),
    "torch_dsparse": ("C3", "PyTorch d-sparse"),  # bench_dense's peer
}
PASS_STYLE = {"forward": ("-", "o", "forward"), "backward": ("--", "s", "forward+backward")}
DPI = 80
HIGHLIGHT = 1500.0  # the speedup the issue asks to exceed; drawn as a reference line


def plot_all(results: dict[str, Any], out_dir: str) -> list[str]:
    """Write every plot the results have data for; return the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, fn in (
        ("speedup_vs_image_size.png", plot_image_size),
        ("speedup_vs_patch_size.png", plot_patch_size),
        ("kernel_throughput.png", plot_throughput),
    ):
        path = os.path.join(out_dir, name)
        if fn(results, path):
            written.append(path)
    return written


def _scaled_note(rows: list[dict[str, Any]]) -> str:
    scaled = [r for r in rows if r.get("patchwise_scaled")]
    if not scaled:
        return "patch scanning timed on every pixel"
    return (
        "hollow markers: patch scanning timed on a sample of pixels, scaled linearly to the "
        f"image ({len(scaled)} of {len(rows)} points)"
    )


def _finish(fig: Any, rows: list[dict[str, Any]], path: str) -> None:
    """One legend for all panels and the sampling note below them, then save."""
    seen: dict[str, Any] = {}
    for a in fig.axes:  # every series of every panel, once
        for h, label in zip(*a.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, h)
    order = sorted(seen, key=lambda lb: ("d-sparse" not in lb, "FCN" not in lb, lb))
    fig.legend(
        [seen[lb] for lb in order],
        order,
        loc="lower center",
        ncol=3,
        fontsize=7,
        frameon=False,
        bbox_to_anchor=(0.5, 0.04),
    )
    fig.text(0.5, 0.01, _scaled_note(rows), ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.17 if len(fig.axes) == 1 else 0.12, 1, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _speedup_axes(ax: Any, title: str) -> None:
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.tick_params(labelsize=8)


def _draw_series(ax: Any, rows: list[dict[str, Any]], xkey: str) -> None:
    """One line per (method, pass), measured (solid/dashed) and theory (dotted, thin)."""
    series: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        series[(r["method"], r["pass"])].append(r)
    for (method, pss), rs in sorted(series.items()):
        rs.sort(key=lambda r: r[xkey])
        color, mlabel = METHOD_STYLE.get(method, ("C2", method))
        ls, marker, plabel = PASS_STYLE.get(pss, (":", "^", pss))
        xs, ys = [r[xkey] for r in rs], [r["speedup"] for r in rs]
        ax.plot(xs, ys, ls=ls, color=color, lw=1.2, label=f"{mlabel}, {plabel}")
        for x, y, r in zip(xs, ys, rs, strict=True):
            hollow = r.get("patchwise_scaled")
            ax.plot(x, y, marker=marker, ms=5, color=color, mfc="white" if hollow else color, ls="")
        theory = [(r[xkey], r["theory"]) for r in rs if r.get("theory")]
        if theory and pss == "forward":
            tx, ty = zip(*theory, strict=True)
            ax.plot(tx, ty, ls=":", color=color, lw=1, alpha=0.8, label=f"{mlabel}, theory")
    best = max(rows, key=lambda r: r["speedup"])
    if best["speedup"] >= HIGHLIGHT:
        ax.axhline(HIGHLIGHT, color="0.5", lw=0.8, ls="-.", label=f"{HIGHLIGHT:.0f}x")
    ax.annotate(
        f"{best['speedup']:.0f}x ({best['pass']})",
        (best[xkey], best["speedup"]),
        textcoords="offset points",
        xytext=(-6, -3),
        ha="right",
        va="top",
        fontsize=7,
    )
    ax.margins(x=0.08, y=0.15)


def plot_image_size(results: dict[str, Any], path: str) -> bool:
    rows = results.get("speedups") or []
    if not rows:
        return False
    nets = sorted({(r["patch_size"], r["network"]) for r in rows})
    n = len(nets)
    cols = n if n <= 4 else 3
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(
        nrows,
        cols,
        figsize=(max(4.2 * cols, 6.4), 3.2 * nrows + 0.9),
        squeeze=False,
        sharey=True,
    )
    for ax, (patch, net) in zip(axes.flat, nets, strict=False):
        sub = [r for r in rows if r["network"] == net]
        _draw_series(ax, sub, "image_size")
        _speedup_axes(ax, f"{net} (patch {patch})")
        ax.set_xscale("log", base=2)
        sizes = sorted({r["image_size"] for r in sub})
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("image size (pixels per side)", fontsize=8)
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes[0, 0].set_ylabel("speedup over patch scanning", fontsize=8)
    fig.suptitle("Dense pixelwise inference: speedup over patch scanning", fontsize=10)
    _finish(fig, rows, path)
    return True


def patch_sweep_size(rows: list[dict[str, Any]]) -> int | None:
    """The image size shared by the most networks (the largest on ties)."""
    nets: dict[int, set] = defaultdict(set)
    for r in rows:
        nets[r["image_size"]].add(r["network"])
    if not nets:
        return None
    return max(nets, key=lambda s: (len(nets[s]), s))


def plot_patch_size(results: dict[str, Any], path: str) -> bool:
    rows = results.get("speedups") or []
    size = results.get("patch_sweep_image_size") or patch_sweep_size(rows)
    sub = [r for r in rows if r["image_size"] == size]
    if len({r["patch_size"] for r in sub}) < 2:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    _draw_series(ax, sub, "patch_size")
    _speedup_axes(ax, f"speedup over patch scanning, {size}x{size} images")
    patches = sorted({r["patch_size"] for r in sub})
    ax.set_xticks(patches, [str(p) for p in patches])
    nets = ", ".join(n for _, n in sorted({(r["patch_size"], r["network"]) for r in sub}))
    ax.set_xlabel(f"patch size ({nets})", fontsize=8)
    ax.set_ylabel("speedup", fontsize=8)
    _finish(fig, sub, path)
    return True


def _impl_order(impls: set[str]) -> list[str]:
    mid = sorted(i for i in impls if i not in (OURS, PEER))
    return [i for i in (OURS,) if i in impls] + mid + [i for i in (PEER,) if i in impls]


IMPL_COLOR = {OURS: "C0", PEER: "C3"}
IMPL_LABEL = {OURS: "cnncore", PEER: "PyTorch"}
SHORT = {"forward": "fwd", "backward": "bwd"}


def plot_throughput(results: dict[str, Any], path: str) -> bool:
    """One panel per kernel: a bar per implementation and (pass, configuration), the machine's
    ceiling as a dashed line."""
    rows = [r for r in results.get("throughput") or [] if rate(r)[0]]
    if not rows:
        return False
    panels: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        panels[r["kernel"]].append(r)
    kernels = list(panels)
    cells_max = max(len({(r["direction"], r["config"]) for r in rs}) for rs in panels.values())
    ncols = 2 if len(kernels) > 1 and cells_max <= 6 else 1
    nrows = (len(kernels) + ncols - 1) // ncols
    width = 6.0 if ncols == 2 else max(6.0, min(16.0, 0.85 * cells_max))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, 3.5 * nrows + 0.3), squeeze=False
    )
    ref = results.get("reference", {})
    others = iter(f"C{i}" for i in (1, 2, 4, 5, 6, 7, 8, 9) * 4)
    colors = dict(IMPL_COLOR)
    for ax, kernel in zip(axes.flat, kernels, strict=False):
        sub = panels[kernel]
        both = len({r["direction"] for r in sub}) > 1
        cells = list(dict.fromkeys((r["direction"], r["config"]) for r in sub))
        by = {(r["direction"], r["config"], r["impl"]): r for r in sub}
        impls = _impl_order({r["impl"] for r in sub})
        unit = rate(sub[0])[1]
        width = 0.8 / len(impls)
        for k, impl in enumerate(impls):
            if impl not in colors:
                colors[impl] = next(others)
            vals = [rate(by[c + (impl,)])[0] if c + (impl,) in by else 0.0 for c in cells]
            xs = [x + (k - (len(impls) - 1) / 2) * width for x in range(len(cells))]
            ax.bar(xs, vals, width, color=colors[impl], label=IMPL_LABEL.get(impl, impl))
        ceiling = [
            r.get("sgemm_peak_gflops" if unit == "GFLOP/s" else "copy_bandwidth_gbs") for r in sub
        ]
        peak = next((c for c in ceiling if c), None) or (
            ref.get("sgemm_gflops") if unit == "GFLOP/s" else ref.get("copy_gbs")
        )
        if peak and "(" not in kernel:  # CPU kernels: the CPU's ceiling
            name = "sgemm peak" if unit == "GFLOP/s" else "copy bandwidth"
            ax.axhline(peak, color="k", ls="--", lw=1, label=f"{name} {peak:.0f} {unit}")
        labels = [
            (f"{SHORT.get(d, d)}\n" if both else "") + c.replace(" ", "\n", 1) for d, c in cells
        ]
        ax.set_xticks(range(len(cells)), labels)
        ax.tick_params(axis="x", labelsize=6)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_ylabel(unit, fontsize=8)
        ax.set_title(kernel if both else f"{kernel} {sub[0]['direction']}", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=6)
    for ax in axes.flat[len(kernels) :]:
        ax.axis("off")
    fig.suptitle("Kernel throughput (fastest round) against PyTorch and the machine", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True
