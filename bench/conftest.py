"""Shared fixtures of the pytest-benchmark suites (``pytest --benchmark-only``).

- ``torch_peer``: PyTorch CPU with as many threads as ours (2 here); skips the test with a clear
  reason when PyTorch is not installed, so only the peer rows disappear.
- ``sgemm_peak`` / ``copy_bandwidth``: the machine's ceilings, measured once per session in the same
  run as the kernels (GFLOP/s, GB/s).
- ``throughput``: after ``benchmark(...)``, ``throughput(benchmark, kernel=..., direction=...,
  config=..., impl=..., flops=... or bytes=...)`` fills ``benchmark.extra_info`` with the
  conventions of ``bench.report`` (GFLOP/s or GB/s from the fastest round, the ceiling beside it)
  and adds the row to the throughput table printed at the end of the session.

At the end of a ``--benchmark-only`` session two summaries follow pytest-benchmark's own table:
ours and the peers side by side per group (median of the rounds, each peer's time over ours), and
the throughput table against the machine's ceilings.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from bench import machine
from bench import report as _report

_ROWS = pytest.StashKey[list]()
_TORCH_MISSING = (
    "PyTorch is not installed: the PyTorch CPU peer rows are skipped "
    "(pip install 'cnncore[bench]' to compare against it)"
)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_ROWS] = []


@pytest.fixture(scope="session")
def torch_peer() -> Any:
    """The ``torch`` module, with ``machine.threads()`` threads (2 here), or a skip."""
    torch = pytest.importorskip("torch", reason=_TORCH_MISSING)
    machine.set_torch_threads(torch)
    return torch


@pytest.fixture(scope="session")
def sgemm_peak() -> float:
    """float32 GEMM rate of NumPy's BLAS on 2048 and 4096 matrices (GFLOP/s), this session."""
    return machine.sgemm_peak(sizes=(2048, 4096), reps=2)["gflops"]


@pytest.fixture(scope="session")
def copy_bandwidth() -> float:
    """Large array copy rate (GB/s, read plus written), this session."""
    return machine.copy_bandwidth()["gbs"]


@pytest.fixture
def throughput(request: pytest.FixtureRequest):
    """Record a benchmark's throughput next to the machine's ceiling (see the module docstring)."""

    def record(benchmark: Any, **info: Any) -> dict[str, Any]:
        # the ceilings are measured (once per session) only when the caller gives none
        if "flops" in info and "sgemm_peak_gflops" not in info:
            info["sgemm_peak_gflops"] = request.getfixturevalue("sgemm_peak")
        if "bytes" in info and "copy_bandwidth_gbs" not in info:
            info["copy_bandwidth_gbs"] = request.getfixturevalue("copy_bandwidth")
        stats = getattr(benchmark, "stats", None)
        seconds = stats.stats.min if stats else None
        row = _report.throughput_info(seconds=seconds, **info)
        benchmark.extra_info.update(row)
        if seconds is not None:
            request.config.stash[_ROWS].append({"group": benchmark.group, **row})
        return row

    return record


# the implementation of ours in each suite's parameters, by priority
OURS_LABELS = ("cnncore", "dsparse", "plain", "ours")


def _label(b: Any) -> str:
    params = b.params or {}
    for key in ("impl", "method", "strategy"):
        if key in params:
            return str(params[key])
    return str((b.extra_info or {}).get("impl") or b.name)


def _t(seconds: float) -> str:
    return f"{seconds:.3g} s" if seconds >= 1 else f"{seconds * 1e3:.3g} ms"


def side_by_side(benchmarks: list[Any]) -> list[str]:
    """One line per benchmark group: every implementation's median time, and each one's time over
    ours (>1: ours is faster).  Dense rows are whole-image times (samples already scaled)."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for b in benchmarks:
        if b.stats:
            groups[b.group or b.name].append(b)
    lines = []
    for group, items in groups.items():
        times = {_label(b): b.stats.median for b in items}
        ours = next((times[k] for k in OURS_LABELS if k in times), None)
        parts = []
        for label, t in times.items():
            ratio = "" if ours is None or label in OURS_LABELS else f" ({t / ours:.2f}x ours)"
            parts.append(f"{label} {_t(t)}{ratio}")
        lines.append(f"{group}: " + " | ".join(parts))
    return lines


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = getattr(config, "_benchmarksession", None)
    lines = side_by_side(getattr(session, "benchmarks", None) or [])
    if lines:
        terminalreporter.write_sep(
            "-", "ours and the peers per group (median; peer time / our time, >1: ours faster)"
        )
        for line in lines:
            terminalreporter.write_line(line)
    rows = config.stash.get(_ROWS, [])
    if rows:
        terminalreporter.write_sep("-", "throughput (fastest round) beside the machine's ceilings")
        terminalreporter.write_line(_report.throughput_table(rows))
