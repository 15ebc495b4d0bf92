"""``python -m bench gpu``: on a machine with a GPU, one command runs the real-GPU test suite and
the GPU benchmarks, and writes their JSON, a Markdown report and the plots.

1. The CUDA tests on the device (``NUMBA_ENABLE_CUDASIM=0``): ``tests/kernels/cuda``,
   ``tests/cnncore/test_nn_cuda.py`` and ``tests/cnncore/test_dense_cuda.py``; the outcome and the
   pytest summary line go into ``gpu.json``.
2. ``bench/bench_cuda.py --benchmark-only``: conv2d, max pooling, LRN/LCN and pixel65 dense
   (256, 512, 1024) against PyTorch CUDA on the same device; the card's name is in every row.
   pytest-benchmark's JSON is ``gpu_benchmarks.json``; ``results.json``, ``results.md`` and the
   plots are derived from it (``bench.report.from_pytest_benchmark``).

Each step runs in its own process with a time limit (the defaults fit both in 8 minutes).
``--quick`` uses tiny shapes and accepts Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``), which is
how the plumbing is tested on machines without a GPU; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = ("tests/kernels/cuda", "tests/cnncore/test_nn_cuda.py", "tests/cnncore/test_dense_cuda.py")
TEST_LIMIT, BENCH_LIMIT = 240, 240  # seconds: both steps within 8 minutes


def _env(quick: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)  # the steps need pytest-benchmark's plugin
    if quick:
        env["CNNCORE_BENCH_GPU_QUICK"] = "1"
        env.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    else:
        env["NUMBA_ENABLE_CUDASIM"] = "0"
        env.pop("CNNCORE_BENCH_GPU_QUICK", None)
    return env


def _pytest(args: list[str], env: dict[str, str], limit: float) -> dict[str, Any]:
    """Run pytest in a subprocess; returns its exit code, seconds, summary line and output tail."""
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc = 124
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else ""
        out += f"\n(stopped after {limit:.0f} s)"
    lines = [ln for ln in out.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", ln)]
    return {
        "command": " ".join(["pytest", *args]),
        "returncode": rc,
        "seconds": round(time.perf_counter() - t0, 1),
        "summary": lines[-1].strip("= ") if lines else None,
        "output_tail": out[-4000:],
    }


def card_name(env: dict[str, str]) -> str | None:
    """The GPU's name as Numba sees it (in a subprocess, with the step's environment)."""
    code = (
        "from numba import cuda; n = cuda.get_current_device().name; "
        "print(n.decode() if isinstance(n, bytes) else n)"
    )
    try:
        p = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return None
    return p.stdout.strip().splitlines()[-1] if p.returncode == 0 and p.stdout.strip() else None


def run(
    out: str,
    quick: bool = False,
    tests: tuple[str, ...] = TESTS,
    select: str | None = None,
    run_tests: bool = True,
    limits: tuple[float, float] = (TEST_LIMIT, BENCH_LIMIT),
) -> dict[str, Any]:
    """Both steps; writes ``gpu.json``, ``gpu_benchmarks.json``, ``results.*`` and the plots into
    ``out`` and returns the record of ``gpu.json``."""
    from bench import machine, plots, report

    os.makedirs(out, exist_ok=True)
    env = _env(quick)
    record: dict[str, Any] = {
        "quick": quick,
        "card": card_name(env) or ("Numba CUDA simulator" if quick else None),
        "simulator": env.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"),
        "load_average_start": machine.load_average(),
    }
    if run_tests:
        record["tests"] = _pytest(["-q", "-rfE", *tests], env, limits[0])
    bench_json = os.path.join(out, "gpu_benchmarks.json")
    args = ["-q", "bench/bench_cuda.py", "--benchmark-only", f"--benchmark-json={bench_json}"]
    if select:
        args += ["-k", select]
    record["benchmarks"] = _pytest(args, env, limits[1])
    record["load_average_end"] = machine.load_average()
    written = []
    if os.path.exists(bench_json):
        with open(bench_json) as f:
            res = report.from_pytest_benchmark(json.load(f), source="python -m bench gpu")
        res["machine"]["gpu"] = record["card"]
        res["notes"].append(
            f"GPU: {record['card']}" + (" (simulator)" if record["simulator"] else "")
        )
        report.write_json(res, os.path.join(out, "results.json"))
        with open(os.path.join(out, "results.md"), "w") as f:
            f.write(report.markdown(res))
        written = [os.path.join(out, n) for n in ("results.json", "results.md")]
        written += plots.plot_all(res, out)
    record["written"] = written
    report.write_json(record, os.path.join(out, "gpu.json"))
    return record


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench gpu",
        description="The real-GPU test suite and the GPU benchmarks against PyTorch CUDA, with "
        "JSON, Markdown and plots (about 8 minutes at most).",
    )
    p.add_argument("--out", default="bench_out/gpu", help="output folder (default: %(default)s)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny shapes; accepts the CUDA simulator (tests the plumbing, not the speed)",
    )
    p.add_argument("--tests", default=",".join(TESTS), help="test paths, comma separated")
    p.add_argument("--no-tests", action="store_true", help="only the benchmarks")
    p.add_argument("-k", dest="select", default=None, help="pytest -k for the benchmarks")
    a = p.parse_args(argv)
    rec = run(
        a.out,
        quick=a.quick,
        tests=tuple(t for t in a.tests.split(",") if t),
        select=a.select,
        run_tests=not a.no_tests,
    )
    for step in ("tests", "benchmarks"):
        if step in rec:
            r = rec[step]
            print(f"{step}: exit {r['returncode']} in {r['seconds']} s: {r['summary']}")
    print(f"card: {rec['card']}; wrote {', '.join(rec['written'] + ['gpu.json'])} in {a.out}")
    failed = [s for s in ("tests", "benchmarks") if s in rec and rec[s]["returncode"] != 0]
    return 1 if failed else 0
