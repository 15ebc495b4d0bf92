"""The plots of a results dictionary (see ``bench.report``): PNG for reading, SVG for papers.

1. ``speedup_vs_image_size``: speedup over our patch scanning against the image size; a row of
   panels per pass (forward; backward = forward + backward of a training step), a column per
   network; one colour per method (ours and the baselines), the theoretical ratio dotted.
2. ``speedup_vs_patch_size``: the same against the patch size, at one image size.  Lines join
   only networks of one design (the ``pixel_net`` family: pixel97 ... pixel193 and pixel321);
   networks of other designs (toy15, and pixel65, whose pools drop a row) are separate markers.
3. ``kernel_throughput``: GFLOP/s or GB/s of ours and PyTorch per configuration (horizontal bars,
   so the configurations read in full), the rounds' spread as error bars, the sgemm peak and FMA
   peak (or copy bandwidth) measured in the same run as reference lines.

Measured points are filled circles.  Extrapolated points (patch scanning timed on a sample of
pixels and scaled, or FCN timed on a sample of its passes and scaled) are hollow diamonds joined
by dashed segments, and every figure's caption lists them.  Error bars span the min-max of the
interleaved rounds.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from bench.report import OURS, PEER, rate  # noqa: E402

METHOD_STYLE = {
    "dsparse": ("C0", "d-sparse (ours)"),
    "fcn": ("C1", "FCN (ours)"),
    "torch_dsparse": ("C3", "PyTorch d-sparse"),
    "onnx_dsparse": ("C2", "ONNX Runtime d-sparse"),
    "torch_patchwise": ("C7", "PyTorch patch scanning"),
}
PASSES = ("forward", "backward")
PASS_TITLE = {"forward": "forward", "backward": "backward (forward + backward of a training step)"}
DPI = 90
FORMATS = ("png", "svg")
FAMILY = "pixel_net"
FAMILY_NETWORKS = ("pixel97", "pixel129", "pixel161", "pixel193", "pixel321")
OTHER_MARKERS = {"toy15": "^", "pixel65": "s"}


def family(network: str) -> str:
    """The design family of a network: ``pixel_net`` or the network's own name."""
    return FAMILY if network in FAMILY_NETWORKS else network


def plot_all(results: dict[str, Any], out_dir: str) -> list[str]:
    """Write every plot the results have data for (PNG and SVG); return the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, fn in (
        ("speedup_vs_image_size", plot_image_size),
        ("speedup_vs_patch_size", plot_patch_size),
        ("kernel_throughput", plot_throughput),
    ):
        fig = fn(results)
        if fig is None:
            continue
        for ext in FORMATS:
            path = os.path.join(out_dir, f"{name}.{ext}")
            fig.savefig(path, dpi=DPI)
            written.append(path)
        plt.close(fig)
    return written


def extrapolated(r: dict[str, Any]) -> bool:
    return bool(r.get("patchwise_scaled") or r.get("fcn_scaled"))


def caption(rows: list[dict[str, Any]], width: int = 110) -> str:
    """Which points are extrapolated, and how (the figure's caption)."""
    pw = sorted({f"{r['network']} {r['image_size']}" for r in rows if r.get("patchwise_scaled")})
    fc = sorted({f"{r['network']} {r['image_size']}" for r in rows if r.get("fcn_scaled")})
    parts = ["filled circles: measured; error bars: min-max of the rounds."]
    if pw:
        parts.append(
            "Hollow diamonds, dashed: extrapolated. Patch scanning timed on a sample of pixels and "
            f"scaled to the image for {', '.join(pw)}."
        )
    if fc:
        parts.append(f"FCN timed on a sample of its S*S passes, scaled, for {', '.join(fc)}.")
    return "\n".join(_wrap(p, width) for p in parts)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _series(ax: Any, rows: list[dict[str, Any]], xkey: str, method: str, label: bool) -> None:
    """One method's points against ``xkey``: solid line and filled markers where measured,
    dashed segments and hollow diamonds where extrapolated, error bars from the rounds."""
    color, name = METHOD_STYLE.get(method, ("C5", method))
    rs = sorted(rows, key=lambda r: r[xkey])
    for a, b in zip(rs, rs[1:], strict=False):
        ls = "--" if extrapolated(a) or extrapolated(b) else "-"
        ax.plot([a[xkey], b[xkey]], [a["speedup"], b["speedup"]], ls=ls, color=color, lw=1.2)
    for r in rs:
        lo = r["speedup"] - r.get("speedup_min", r["speedup"])
        hi = r.get("speedup_max", r["speedup"]) - r["speedup"]
        ext = extrapolated(r)
        ax.errorbar(
            r[xkey],
            r["speedup"],
            yerr=[[max(lo, 0)], [max(hi, 0)]],
            color=color,
            marker="D" if ext else "o",
            mfc="white" if ext else color,
            ms=5,
            capsize=2,
            lw=0.8,
        )
    if label:
        ax.plot([], [], color=color, marker="o", label=name)


def _theory(ax: Any, rows: list[dict[str, Any]], xkey: str) -> None:
    for method in ("dsparse", "fcn"):
        pts = sorted(
            {(r[xkey], r["theory"]) for r in rows if r["method"] == method and r.get("theory")}
        )
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, ls=":", color=METHOD_STYLE[method][0], lw=1)


def _legend(fig: Any, extra: list | None = None) -> None:
    handles = [
        Line2D([], [], color=c, marker="o", label=name)
        for m, (c, name) in METHOD_STYLE.items()
        if m in fig._methods
    ]
    handles += [
        Line2D([], [], color="k", marker="o", ls="-", label="measured"),
        Line2D([], [], color="k", marker="D", mfc="white", ls="--", label="extrapolated"),
        Line2D([], [], color="k", ls=":", label="theory (ops ratio)"),
    ] + (extra or [])
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=4,
        fontsize=7,
        frameon=False,
        bbox_to_anchor=(0.5, 0.955),
    )


def _axes(ax: Any, title: str, ylabel: bool) -> None:
    ax.set_yscale("log")
    ax.set_title(title, fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.tick_params(labelsize=7)
    if ylabel:
        ax.set_ylabel("speedup over patch scanning", fontsize=7)


def plot_image_size(results: dict[str, Any]) -> Any:
    rows = results.get("speedups") or []
    if not rows:
        return None
    nets = sorted({(r["patch_size"], r["network"]) for r in rows})
    passes = [p for p in PASSES if any(r["pass"] == p for r in rows)]
    fig, axes = plt.subplots(
        len(passes),
        len(nets),
        figsize=(max(3.0 * len(nets), 6.0), 2.9 * len(passes) + 1.6),
        squeeze=False,
        sharey="row",
    )
    fig._methods = {r["method"] for r in rows}
    for i, pss in enumerate(passes):
        for j, (patch, net) in enumerate(nets):
            ax = axes[i, j]
            sub = [r for r in rows if r["network"] == net and r["pass"] == pss]
            for method in METHOD_STYLE:
                ms = [r for r in sub if r["method"] == method]
                if ms:
                    _series(ax, ms, "image_size", method, False)
            _theory(ax, sub, "image_size")
            _axes(ax, f"{net} (patch {patch}), {pss}", j == 0)
            ax.set_xscale("log", base=2)
            sizes = sorted({r["image_size"] for r in sub}) or [1]
            ax.set_xticks(sizes, [str(s) for s in sizes])
            ax.set_xlabel("image size (pixels per side)", fontsize=7)
    fig.suptitle("Dense pixelwise inference: speedup over patch scanning (ours)", fontsize=10)
    _legend(fig)
    fig.text(
        0.01,
        0.005,
        caption(rows) + "\nbackward = " + PASS_TITLE["backward"] + ".",
        fontsize=6,
        va="bottom",
    )
    fig.tight_layout(rect=(0, 0.09, 1, 0.9))
    return fig


def patch_sweep_size(rows: list[dict[str, Any]]) -> int | None:
    """The image size shared by the most networks (the largest on ties)."""
    nets: dict[int, set] = defaultdict(set)
    for r in rows:
        nets[r["image_size"]].add(r["network"])
    if not nets:
        return None
    return max(nets, key=lambda s: (len(nets[s]), s))


def plot_patch_size(results: dict[str, Any]) -> Any:
    rows = results.get("speedups") or []
    size = results.get("patch_sweep_image_size") or patch_sweep_size(rows)
    sub = [r for r in rows if r["image_size"] == size]
    if len({r["patch_size"] for r in sub}) < 2:
        return None
    passes = [p for p in PASSES if any(r["pass"] == p for r in sub)]
    fig, axes = plt.subplots(1, len(passes), figsize=(5.2 * len(passes), 4.6), squeeze=False)
    fig._methods = {r["method"] for r in sub}
    others = sorted({r["network"] for r in sub if family(r["network"]) != FAMILY})
    for ax, pss in zip(axes[0], passes, strict=True):
        ps = [r for r in sub if r["pass"] == pss]
        fam = [r for r in ps if family(r["network"]) == FAMILY]
        for method in METHOD_STYLE:
            ms = [r for r in fam if r["method"] == method]
            if ms:
                _series(ax, ms, "patch_size", method, False)
        _theory(ax, fam, "patch_size")
        for r in ps:  # networks of another design: their own marker, no line
            if family(r["network"]) == FAMILY:
                continue
            color = METHOD_STYLE.get(r["method"], ("C5", ""))[0]
            ext = extrapolated(r)
            ax.plot(
                r["patch_size"],
                r["speedup"],
                ls="",
                color=color,
                marker=OTHER_MARKERS.get(r["network"], "P"),
                mfc="white" if ext else color,
                ms=7,
            )
        _axes(ax, f"{PASS_TITLE[pss]}, {size}x{size} images", ax is axes[0, 0])
        patches = sorted({r["patch_size"] for r in ps})
        ax.set_xticks(patches, [str(p) for p in patches])
        ax.set_xlabel("patch size", fontsize=7)
    extra = [
        Line2D(
            [],
            [],
            color="k",
            ls="",
            marker=OTHER_MARKERS.get(n, "P"),
            mfc="white",
            label=f"{n} (other design, not on the line)",
        )
        for n in others
    ]
    members = [n for n in FAMILY_NETWORKS if any(r["network"] == n for r in sub)]
    fig.suptitle(
        f"Speedup over patch scanning against patch size: lines join the {FAMILY} family "
        f"({', '.join(members) or 'none in this run'})",
        fontsize=9,
    )
    _legend(fig, extra)
    fig.text(0.01, 0.005, caption(sub, int(fig.get_figwidth() * 19)), fontsize=6, va="bottom")
    fig.tight_layout(rect=(0, 0.08, 1, 0.85))
    return fig


IMPL_COLOR = {OURS: "C0", PEER: "C3"}
IMPL_LABEL = {OURS: "cnncore", PEER: "PyTorch"}


def plot_throughput(results: dict[str, Any]) -> Any:
    """One panel per kernel: horizontal bars per (pass, configuration), ours and PyTorch, error
    bars from the rounds, the machine's ceilings as dashed lines."""
    rows = [r for r in results.get("throughput") or [] if rate(r)[0]]
    if not rows:
        return None
    panels: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        panels[r["kernel"]].append(r)
    heights = [len({(r["direction"], r["config"]) for r in rs}) for rs in panels.values()]
    longest = max(len(f"{r['direction']} {r['config']}{_algo(r)}") for r in rows)
    width = 6.5 + 0.06 * longest  # inches: the bars plus the labels at 7 pt
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(width, 0.42 * sum(heights) + 1.2 * len(panels) + 0.6),
        squeeze=False,
        gridspec_kw={"height_ratios": [h + 1.5 for h in heights]},
    )
    fig.subplots_adjust(
        left=(0.06 * longest + 0.2) / width, right=1 - 1.7 / width, hspace=0.55, top=0.92
    )
    ref = results.get("reference", {})
    for ax, (kernel, sub) in zip(axes[:, 0], panels.items(), strict=True):
        cells = list(dict.fromkeys((r["direction"], r["config"]) for r in sub))
        by = {(r["direction"], r["config"], r["impl"]): r for r in sub}
        impls = [i for i in (OURS, PEER) if any(r["impl"] == i for r in sub)]
        impls += sorted({r["impl"] for r in sub} - set(impls))
        unit = rate(sub[0])[1]
        h = 0.8 / len(impls)
        for k, impl in enumerate(impls):
            ys, vals, lo, hi = [], [], [], []
            for y, c in enumerate(cells):
                r = by.get(c + (impl,))
                if r is None:
                    continue
                v = rate(r)[0]
                ys.append(y + (k - (len(impls) - 1) / 2) * h)
                vals.append(v)
                smin, smax = r.get("seconds_min"), r.get("seconds_max")
                lo.append(v - v * r["seconds"] / smax if smax else 0.0)
                hi.append(v * r["seconds"] / smin - v if smin else 0.0)
            ax.barh(
                ys,
                vals,
                h,
                xerr=[lo, hi],
                color=IMPL_COLOR.get(impl, f"C{k + 4}"),
                label=IMPL_LABEL.get(impl, impl),
                error_kw={"lw": 0.8, "capsize": 1.5},
            )
        if "(" not in kernel:  # CPU kernels: the CPU's ceilings
            lines = (
                [
                    ("sgemm peak", ref.get("sgemm_gflops"), "k"),
                    (
                        "FMA peak"
                        + ("" if (ref.get("fma_peak") or {}).get("measured") else " (estimated)"),
                        ref.get("fma_gflops"),
                        "0.5",
                    ),
                ]
                if unit == "GFLOP/s"
                else [("copy bandwidth", ref.get("copy_gbs"), "k")]
            )
            for name, peak, color in lines:
                if peak:
                    ax.axvline(peak, color=color, ls="--", lw=1, label=f"{name} {peak:.0f} {unit}")
        labels = [f"{d} {c}" + _algo(by.get((d, c, OURS))) for d, c in cells]
        ax.set_yticks(range(len(cells)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel(unit, fontsize=7)
        ax.set_title(kernel, fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(
        "Kernel throughput (median of interleaved rounds, min-max as error bars)", fontsize=10
    )
    return fig


def _algo(row: dict[str, Any] | None) -> str:
    return f" [{row['algorithm']}]" if row and row.get("algorithm") else ""
