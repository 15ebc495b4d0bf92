"""``python -m bench``: the benchmark sweep, its plots, JSON and Markdown table.

Commands::

    python -m bench [--sizes 64,128,256] [--networks toy15,pixel65,...] [--out bench_out] [--quick]
    python -m bench record [--out bench_out/record]   # the >1500x configuration (pixel321)
    python -m bench plot results.json [more.json ...] [--out dir]
                                  # saved pytest-benchmark JSON(s) or ours, merged into one plot
    python -m bench gpu [--quick] [--out bench_out/gpu]
                                  # on a GPU machine: the CUDA tests and GPU benchmarks (bench.gpu)
    python -m bench compare OLD/results.json NEW/results.json
                                  # row by row: medians, spreads, ratios (bench.compare)
    python -m bench readme bench/results/results.json
                                  # the README's "Latest results" block (bench.readme)

The sweep writes ``results.json``, ``results.md`` and the PNG plots into ``--out`` and prints the
table, each measured speedup beside its theoretical ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from bench import plots, report, sweep


def _add_sweep_args(p: argparse.ArgumentParser, sizes: tuple, networks: tuple, out: str) -> None:
    p.add_argument(
        "--sizes",
        default=",".join(map(str, sizes)),
        help="image sizes (pixels per side), comma separated (default: %(default)s)",
    )
    p.add_argument(
        "--networks",
        default=",".join(networks),
        help="patch networks: toy15, pixel65, pixel97, pixel129, pixel161, pixel193, pixel321 "
        "(default: %(default)s)",
    )
    p.add_argument("--out", default=out, help="output folder (default: %(default)s)")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"tiny sizes ({','.join(map(str, sweep.QUICK_SIZES))}) and networks "
        f"({','.join(sweep.QUICK_NETWORKS)}), tiny kernel shapes: seconds",
    )
    p.add_argument("--no-kernels", action="store_true", help="skip the kernel throughput part")
    p.add_argument("--no-dense", action="store_true", help="skip the dense speedup part")
    p.add_argument(
        "--patch-budget",
        type=float,
        default=None,
        help="seconds of one round of our patch scanning per network, size and pass; the pixels "
        "that fit are timed (ours and PyTorch's, the same sample) and scaled to the image "
        "(default 1.5, twice that for the backward; quick 0.03)",
    )
    p.add_argument(
        "--fcn-shifts",
        type=int,
        default=None,
        help="FCN passes timed per measurement, then scaled to all S*S (default 8, quick 4)",
    )
    p.add_argument(
        "--methods",
        default=None,
        help="dense methods to time beside patch scanning: fcn, dsparse (default: both; "
        "record: dsparse)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved rounds per figure, the median quoted (default 5, quick 3)",
    )
    p.add_argument(
        "--peers",
        default=None,
        help="dense baselines beside ours: torch_patchwise, torch_dsparse, onnx_dsparse "
        "(default: all three; 'none' for none)",
    )
    p.add_argument(
        "--peer-process",
        choices=("best", "own", "shared"),
        default="best",
        help="best (default): PyTorch in two processes of its own, libgomp's default and the "
        "passive wait policy, the faster kept per case; own: one process, libgomp's default; "
        "shared: in this process, under cnncore's throttled spinning",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _options(a: argparse.Namespace, argv: list[str]) -> sweep.Options:
    given = {s.split("=")[0] for s in argv}
    kw: dict[str, Any] = {
        "kernels": not a.no_kernels,
        "dense": not a.no_dense,
        "progress": not a.no_progress,
    }
    if not a.quick or "--sizes" in given:
        kw["sizes"] = sweep.parse_list(a.sizes, int)
    if not a.quick or "--networks" in given:
        kw["networks"] = sweep.parse_list(a.networks, str)
    if a.patch_budget is not None:
        kw["patch_budget"] = a.patch_budget
    if a.methods is not None:
        methods = sweep.parse_list(a.methods, str)
        bad = [m for m in methods if m not in ("fcn", "dsparse")]
        if bad or not methods:
            raise SystemExit(f"--methods takes fcn and/or dsparse, got {a.methods!r}")
        kw["methods"] = ("patchwise", *methods)
    if a.rounds is not None:
        if a.rounds < 1:
            raise SystemExit("--rounds must be at least 1")
        kw["rounds"] = a.rounds
    if a.peers is not None:
        peers = () if a.peers == "none" else sweep.parse_list(a.peers, str)
        bad = [m for m in peers if m not in sweep.Options.peers]
        if bad:
            raise SystemExit(
                f"--peers takes {', '.join(sweep.Options.peers)} or none, got {a.peers!r}"
            )
        kw["peers"] = peers
    kw["peer_process"] = a.peer_process
    if a.fcn_shifts is not None:
        if a.fcn_shifts < 1:
            raise SystemExit("--fcn-shifts must be at least 1")
        kw["fcn_shifts"] = a.fcn_shifts
    if not kw.get("sizes", True) or any(s < 1 for s in kw.get("sizes", ())):
        raise SystemExit("--sizes must be positive integers")
    for name in kw.get("networks", ()):
        try:
            sweep.build_network(name)  # fails early, with the list of known networks
        except ValueError as e:
            raise SystemExit(f"--networks: {e}") from None
    return sweep.quick_options(**kw) if a.quick else sweep.Options(**kw)


def write_outputs(results: dict[str, Any], out: str) -> list[str]:
    """results.json, results.md and the plots in ``out``; returns the paths."""
    os.makedirs(out, exist_ok=True)
    paths = [os.path.join(out, "results.json"), os.path.join(out, "results.md")]
    report.write_json(results, paths[0])
    with open(paths[1], "w") as f:
        f.write(report.markdown(results))
    return paths + plots.plot_all(results, out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "gpu":
        from bench import gpu

        return gpu.main(argv[1:])
    if argv and argv[0] == "compare":
        from bench import compare

        return compare.main(argv[1:])
    if argv and argv[0] == "readme":
        from bench import readme

        return readme.main(argv[1:])
    if argv and argv[0] == "plot":
        p = argparse.ArgumentParser(
            prog="python -m bench plot",
            description="Plot a saved pytest-benchmark JSON (pytest --benchmark-only "
            "--benchmark-json FILE) or a results.json of python -m bench.",
        )
        p.add_argument(
            "json",
            nargs="+",
            help="the saved JSON file(s); several are merged into one set of plots",
        )
        p.add_argument("--out", default=None, help="output folder (default: beside the first JSON)")
        a = p.parse_args(argv[1:])
        results = report.merge([report.load_results(path) for path in a.json])
        out = a.out or os.path.splitext(a.json[0])[0] + "_plots"
        paths = write_outputs(results, out)
        print(report.markdown(results))
        print("wrote " + ", ".join(paths))
        return 0
    record = bool(argv) and argv[0] == "record"
    if record:
        argv = argv[1:]
        defaults = (sweep.RECORD["sizes"], sweep.RECORD["networks"], "bench_out/record")
    else:
        defaults = (sweep.SIZES, sweep.NETWORKS, "bench_out")
    p = argparse.ArgumentParser(
        prog="python -m bench" + (" record" if record else ""),
        description=(
            "Measure d-sparse and FCN against patch scanning on the configuration that beats "
            "it by more than 1500x."
            if record
            else "Benchmark sweep: kernel throughput against PyTorch and the machine's peaks, and "
            "dense pixelwise inference against patch scanning. Writes results.json, "
            "results.md and PNG plots."
        ),
        epilog="python -m bench plot FILE.json [FILE2.json ...] [--out DIR] plots saved "
        "pytest-benchmark JSON(s) or results.json files, merged; python -m bench compare OLD.json "
        "NEW.json compares two runs row by row; python -m bench readme results.json prints the "
        "README's results block.",
    )
    _add_sweep_args(p, *defaults)
    a = p.parse_args(argv)
    opt = _options(a, argv)
    if record:
        opt.kernels = False
        if a.methods is None:
            opt.methods = sweep.RECORD["methods"]
        if a.patch_budget is None:
            opt.patch_budget = sweep.RECORD["patch_budget"]
    results = sweep.run(opt, source="python -m bench" + (" record" if record else ""))
    paths = write_outputs(results, a.out)
    print(report.markdown(results))
    for w in results.get("warnings", []):
        print(f"warning: {w}")
    print(f"wrote {', '.join(paths)} in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
