"""Do our kernels run equally fast whether torch or cnncore is imported first, on a quiet
machine and while a second busy process shares it?

``python -m bench.import_order [--rounds 5] [--reps 7] [--glue 0.002] [--conditions quiet,busy]
[--json FILE] [--quick]`` runs one workload (below) in fresh subprocesses (``bench.fresh_process``)
in the four cells of {cnncore first, torch first} x {quiet, busy}.  In the busy condition a second
process spins on one core for the whole block (the shared-machine case where libgomp's spinning
threads hurt).  The cells are interleaved: every round runs both conditions and, within each, both
orders, and the order of conditions and of imports flips every round, so drift over the run reaches
every cell alike.  ``--glue`` runs that many CPU seconds of Python between kernel calls, as a
training loop does; the wall time of kernels and glue is counted: idle OpenMP threads that spin
through the glue take a core from it and from the other process.

It prints per cell the median over the rounds of each process's median with the [min-max] over the
rounds, and per condition the ratio torch first / cnncore first with its bounds (the slowest and
fastest pairing of the rounds) and whether it lies within 10% (``TOLERANCE``), and the 1-minute
load average at the start and end.  ``--quick``: one round of one repetition, to try the plumbing
(seconds, not a measurement).  It measures and reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import fresh_process, machine

TOLERANCE = 0.10  # "equally fast": torch first within 10% of cnncore first
CONDITIONS = ("quiet", "busy")

# The workload: a training-shaped conv forward + backward, a d-sparse-shaped conv forward and a
# max pooling; every call is a separate set of parallel regions with serial glue in between.
WORKLOAD = r"""
import time
import numpy as np
{imports}
from cnncore import functional as F
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 64, 15, 15), dtype=np.float32)
w = rng.standard_normal((64, 64, 5, 5), dtype=np.float32)
xd = rng.standard_normal((1, 64, 140, 140), dtype=np.float32)
wd = rng.standard_normal((128, 64, 3, 3), dtype=np.float32)
xp = rng.standard_normal((1, 32, 256, 256), dtype=np.float32)
y = F.conv2d(x, w, None, 1, 2)
calls = [
    lambda: F.conv2d(x, w, None, 1, 2),
    lambda: F.conv2d_backward(y, x, w, 1, 2),
    lambda: F.conv2d(xd, wd, None, 1, 0, 4),
    lambda: F.max_pool2d(xp, 2, 1, 0, 2),
    lambda: F.relu(xp),
]
def glue(seconds):  # Python work between kernels: a fixed amount of this thread's CPU time
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
def work():  # wall time of the kernels and the glue between them
    t = time.perf_counter()
    for call in calls:
        call()
        glue({glue})
    return time.perf_counter() - t
work()
times = [work() for _ in range({reps})]
print(min(times), sorted(times)[len(times) // 2])
"""


def run_once(order: str, reps: int, glue: float) -> float:
    """The median seconds of ``reps`` workload calls in a fresh process imported in ``order``."""
    out = fresh_process.run(WORKLOAD, order, reps=reps, glue=glue)
    return float(out.split()[1])


class Busy:
    """A second process spinning on one core while the block runs."""

    def __enter__(self) -> Busy:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # let it reach the scheduler before the timed process starts
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def schedule(rounds: int, conditions: tuple[str, ...]) -> list[list[tuple[str, str]]]:
    """Per round, per condition block, the (condition, order) cells in the order they run: the
    conditions' order and the imports' order flip every round."""
    orders = list(fresh_process.ORDERS)
    out = []
    for i in range(rounds):
        conds = list(conditions) if i % 2 == 0 else list(conditions)[::-1]
        ords = orders if i % 2 == 0 else orders[::-1]
        out.append([(c, o) for c in conds for o in ords])
    return out


def measure(
    rounds: int,
    reps: int,
    glue: float,
    conditions: tuple[str, ...] = CONDITIONS,
    once: Callable[[str, int, float], float] = run_once,
    busy: Callable[[], Any] = Busy,
) -> dict[str, Any]:
    """Every cell's times over the interleaved rounds and the summary (``summarize``)."""
    times: dict[str, dict[str, list[float]]] = {
        c: {o: [] for o in fresh_process.ORDERS} for c in conditions
    }
    load_start = machine.load_average()
    for blocks in schedule(rounds, conditions):
        for cond in dict.fromkeys(c for c, _ in blocks):  # each condition's block in turn
            cells = [o for c, o in blocks if c == cond]
            if cond == "busy":
                with busy():
                    for order in cells:
                        times[cond][order].append(once(order, reps, glue))
            else:
                for order in cells:
                    times[cond][order].append(once(order, reps, glue))
    res = summarize(times)
    res.update(
        rounds=rounds,
        reps=reps,
        glue=glue,
        threads=machine.threads(),
        load_average_start=load_start,
        load_average_end=machine.load_average(),
    )
    return res


def summarize(times: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """Per condition and order the median, min and max seconds; per condition the ratio torch
    first / cnncore first with its bounds and whether it lies within ``TOLERANCE``."""
    cells = {
        c: {
            o: {"median": statistics.median(t), "min": min(t), "max": max(t), "times": t}
            for o, t in per.items()
        }
        for c, per in times.items()
    }
    ratios = {}
    for c, per in cells.items():
        a, b = per["cnncore first"], per["torch first"]
        r = b["median"] / a["median"]
        ratios[c] = {
            "ratio": r,
            "min": b["min"] / a["max"],
            "max": b["max"] / a["min"],
            "within_tolerance": abs(r - 1.0) <= TOLERANCE,
        }
    return {"cells": cells, "torch_first_over_cnncore_first": ratios, "tolerance": TOLERANCE}


def lines(res: dict[str, Any]) -> list[str]:
    """The report: one line per cell, one per condition's ratio, the load."""
    out = [
        f"{res['rounds']} interleaved rounds x {res['reps']} workload calls per process, glue "
        f"{res['glue']} s, {res['threads']} threads; 1-minute load average "
        f"{res['load_average_start']} at the start, {res['load_average_end']} at the end"
    ]
    load = max(res["load_average_start"] or 0.0, res["load_average_end"] or 0.0)
    if load > res["threads"]:
        out.append(
            f"warning: load average {load} above the {res['threads']} threads: other processes "
            "shared the machine, so even the quiet cells were not quiet"
        )
    for c, per in res["cells"].items():
        for o, t in per.items():
            out.append(
                f"{c:5s} {o:14s} median {t['median'] * 1e3:7.1f} ms "
                f"[{t['min'] * 1e3:.1f}-{t['max'] * 1e3:.1f}]"
            )
    for c, r in res["torch_first_over_cnncore_first"].items():
        verdict = "within" if r["within_tolerance"] else "NOT within"
        out.append(
            f"{c:5s} torch first / cnncore first: {r['ratio']:.3f} [{r['min']:.3f}-{r['max']:.3f}]"
            f", {verdict} {100 * res['tolerance']:.0f}%"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (%(default)s)")
    p.add_argument("--reps", type=int, default=7, help="workload calls per process (%(default)s)")
    p.add_argument(
        "--glue", type=float, default=0.0, help="CPU seconds of Python work between kernel calls"
    )
    p.add_argument(
        "--conditions",
        default=",".join(CONDITIONS),
        help="quiet and/or busy (a second process spins on one core) (default: %(default)s)",
    )
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--quick", action="store_true", help="one round, one call: the plumbing only")
    a = p.parse_args(argv)
    conditions = tuple(s.strip() for s in a.conditions.split(",") if s.strip())
    if not conditions or any(c not in CONDITIONS for c in conditions):
        raise SystemExit(f"--conditions takes quiet and/or busy, got {a.conditions!r}")
    if a.rounds < 1 or a.reps < 1:
        raise SystemExit("--rounds and --reps must be at least 1")
    rounds, reps = (1, 1) if a.quick else (a.rounds, a.reps)
    res = measure(rounds, reps, a.glue, conditions)
    res["quick"] = a.quick
    print("\n".join(lines(res)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
