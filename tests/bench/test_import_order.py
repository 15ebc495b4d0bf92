"""``python -m bench.import_order``: both import orders, quiet and busy, interleaved, medians."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import fresh_process, import_order  # noqa: E402

HAVE_TORCH = importlib.util.find_spec("torch") is not None


def test_schedule_interleaves_and_flips():
    s = import_order.schedule(2, ("quiet", "busy"))
    assert s[0] == [
        ("quiet", "cnncore first"),
        ("quiet", "torch first"),
        ("busy", "cnncore first"),
        ("busy", "torch first"),
    ]
    assert s[1] == [
        ("busy", "torch first"),
        ("busy", "cnncore first"),
        ("quiet", "torch first"),
        ("quiet", "cnncore first"),
    ]


def test_measure_runs_busy_cells_beside_a_busy_process_and_summarizes():
    log = []
    state = {"busy": False}

    class FakeBusy:
        def __enter__(self):
            state["busy"] = True
            log.append("start busy")

        def __exit__(self, *exc):
            state["busy"] = False
            log.append("stop busy")

    # cnncore first: 1.0 s quiet, 2.0 busy; torch first: 1.05 quiet, 3.0 busy, then + 0.1 per call
    calls = []

    def once(order, reps, glue):
        calls.append((state["busy"], order))
        base = {"cnncore first": (1.0, 2.0), "torch first": (1.05, 3.0)}[order][state["busy"]]
        return base + 0.1 * (len(calls) // 4)

    res = import_order.measure(3, 1, 0.0, once=once, busy=FakeBusy)
    assert len(calls) == 12 and log == ["start busy", "stop busy"] * 3
    assert sum(b for b, _ in calls) == 6
    cells = res["cells"]
    for c in ("quiet", "busy"):
        assert [len(cells[c][o]["times"]) for o in fresh_process.ORDERS] == [3, 3]
    quiet = res["torch_first_over_cnncore_first"]["quiet"]
    busy = res["torch_first_over_cnncore_first"]["busy"]
    assert quiet["within_tolerance"] and not busy["within_tolerance"]
    medians = {o: t["median"] for o, t in cells["busy"].items()}
    assert busy["ratio"] == pytest.approx(medians["torch first"] / medians["cnncore first"])
    assert busy["min"] <= busy["ratio"] <= busy["max"]
    text = "\n".join(import_order.lines(res))
    assert "busy  torch first / cnncore first: " in text and "NOT within 10%" in text
    assert "quiet torch first / cnncore first: " in text


def test_quiet_only():
    res = import_order.measure(1, 1, 0.0, ("quiet",), once=lambda o, r, g: 1.0)
    assert list(res["cells"]) == ["quiet"]
    assert res["torch_first_over_cnncore_first"]["quiet"]["ratio"] == 1.0


@pytest.mark.skipif(not HAVE_TORCH, reason="the import-order study needs PyTorch")
def test_one_real_cell():
    """The workload runs in a fresh process, torch first (one call: plumbing, not a timing)."""
    assert import_order.run_once("torch first", 1, 0.0) > 0
