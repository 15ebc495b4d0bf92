"""The FMA peak: measured by a loop compiled at run time, the /proc/cpuinfo estimate without a
compiler, and the report's ceiling checks that use it."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import fma, machine, report  # noqa: E402

needs_cc = pytest.mark.skipif(fma.compiler() is None, reason="no C compiler on this machine")


@needs_cc
def test_the_loop_compiles_runs_and_gives_a_clock():
    f = fma.peak(1, seconds=0.02, runs=2)
    assert f["measured"] is True and f["gflops"] > 0 and len(f["readings"]) == 2
    assert f["gflops"] == pytest.approx(max(f["readings"]), abs=0.01)
    assert f["lanes"] in (4, 8, 16) and f["cores"] == 1
    # the rate per CPU second is at least the wall-clock rate (equal on an idle core)
    assert all(c >= 0.95 * w for c, w in zip(f["readings"], f["wall_readings"], strict=True))
    per_cycle = machine.fp32_flops_per_cycle(machine.cpu_facts())[0]
    assert f["flops_per_cycle_per_core"] == per_cycle
    assert f["clock_ghz"] == pytest.approx(f["gflops"] / per_cycle)
    # a clock a CPU can have (a loaded machine gives a low one, never a negative or absurd one)
    assert 0.01 < f["clock_ghz"] < 8.0
    assert f["basis"].startswith("measured: an FMA loop") and "GHz effective" in f["basis"]


@needs_cc
def test_threads_each_run_the_loop():
    one = fma.measure(1, 0.02, 1)
    two = fma.measure(2, 0.02, 1)
    assert one["threads"] == 1 and two["threads"] == 2 and two["gflops"] > 0


@needs_cc
def test_no_more_threads_than_cores(monkeypatch):
    monkeypatch.setattr(machine, "usable_cores", lambda: 1)
    assert fma.peak(4, 0.02, 1)["cores"] == 1


def test_without_a_compiler_the_estimate_is_labelled(monkeypatch):
    monkeypatch.setattr(fma, "compiler", lambda: None)
    monkeypatch.setenv("CNNCORE_BENCH_CLOCK_GHZ", "2.5")
    f = fma.peak(2, seconds=0.01, runs=1)
    assert f["measured"] is False and f["basis"].startswith("estimate, not measured")
    assert f["gflops"] == 2 * f["flops_per_cycle_per_core"] * 2.5
    assert "CNNCORE_BENCH_CLOCK_GHZ" in f["basis"]


def test_a_failing_compiler_falls_back(monkeypatch):
    monkeypatch.setenv("CC", "false")  # exists, exits 1: the build fails
    assert fma.compiler().endswith("false")
    assert fma.measure(1, 0.01, 1) is None
    monkeypatch.setenv("CNNCORE_BENCH_CLOCK_GHZ", "3.0")
    assert fma.peak(1, 0.01, 1)["measured"] is False


def _rows(**ref):
    res = report.new_results("t")
    res["reference"].update(ref)

    def conv(seconds, impl, algorithm=None, flops=3e8):
        extra = {"algorithm": algorithm} if algorithm else {}
        return report.throughput_info(
            seconds, "conv2d", "forward", f"c{seconds}", impl, flops=flops,
            sgemm_peak_gflops=200.0, **extra,
        )  # fmt: skip

    res["throughput"] = [
        conv(0.001, "torch"),  # 300 GFLOP/s: above sgemm, below an FMA peak of 330
        conv(0.0005, "cnncore", "winograd"),  # 600 effective GFLOP/s
        conv(0.0005, "cnncore", "im2col"),  # 600 GFLOP/s direct: above the FMA peak
        report.throughput_info(
            0.001, "max_pool2d", "forward", "p", "cnncore", bytes=5e7, copy_bandwidth_gbs=40.0
        ),  # 50 GB/s
        conv(0.01, "cnncore", "im2col"),  # 30 GFLOP/s: below every ceiling
    ]
    return res


def test_every_row_above_a_ceiling_is_explained_or_warned():
    res = _rows(fma_gflops=330.0, sgemm_gflops=200.0)
    by = report.above_ceiling(res)
    assert [r["config"] for r in by["below_fma"]] == ["c0.001"]
    assert [r["algorithm"] for r in by["winograd"]] == ["winograd"]
    assert [r["algorithm"] for r in by["unexplained"]] == ["im2col"]
    assert [r["kernel"] for r in by["cache"]] == ["max_pool2d"]
    notes = report.ceiling_notes(res)
    assert len(notes) == 4 and all(n.startswith("above the sgemm/copy ceiling") for n in notes)
    (warning,) = report.ceiling_warnings(res)
    assert "c0.0005 (cnncore, 300%)" in warning and "no explanation" in warning


def test_an_fma_peak_below_the_sgemm_peak_warns():
    res = _rows(fma_gflops=157.0, sgemm_gflops=177.0, fma_peak={"measured": False})
    warnings = report.ceiling_warnings(res)
    assert any("exceeds the estimated FMA peak (157" in w for w in warnings)
    # with no FMA peak, a FLOP row above sgemm is not explained either
    res = _rows(sgemm_gflops=200.0)
    assert len(report.above_ceiling(res)["unexplained"]) == 2


def test_markdown_gives_the_basis_of_the_fma_peak():
    res = _rows(fma_gflops=330.0, sgemm_gflops=200.0)
    res["reference"]["fma_peak"] = {"gflops": 330.0, "basis": "measured: an FMA loop (x)"}
    assert "FMA peak 330 GFLOP/s (measured: an FMA loop (x))" in report.markdown(res)
