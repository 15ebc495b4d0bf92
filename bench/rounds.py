"""Interleaved rounds: every figure of the sweep is the median of rounds that alternate the sides.

A shared machine's speed drifts by tens of percent within a minute.  Timing ours for a second and
then PyTorch for a second hands the drift to whichever ran in the slower second; alternating short
rounds (ours, peer, peer, ours, ours, peer ...: the order flips every round so neither side always
runs right after the other) gives both the same conditions, and the median of the rounds with its
min-max spread says how much the conditions moved.

A *runner* is anything with ``time(k) -> seconds`` that runs its workload ``k`` times back to back
and returns the total wall time: ``Local`` wraps a callable of this process, ``bench.peer`` runs
the peer's workload in its own process.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, Protocol


class Runner(Protocol):
    def time(self, k: int) -> float: ...


class Local:
    """A callable of this process as a runner (one warm-up call when created)."""

    def __init__(self, fn: Callable[[], Any], warmup: int = 1) -> None:
        self.fn = fn
        for _ in range(warmup):
            fn()

    def time(self, k: int) -> float:
        fn = self.fn
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        return time.perf_counter() - t0


def calls_per_round(runners: dict[str, Runner], min_round: float) -> dict[str, int]:
    """Calls per round for each runner so that one round lasts about ``min_round`` seconds (at least
    one call): fast kernels repeat inside a round, slow ones run once."""
    out = {}
    for name, r in runners.items():
        t = max(r.time(1), 1e-7)
        out[name] = max(1, min(1000, int(min_round / t)))
    return out


def interleave(
    runners: dict[str, Runner], rounds: int = 5, min_round: float = 0.05
) -> dict[str, dict[str, Any]]:
    """Time every runner in ``rounds`` interleaved rounds; per runner the seconds per call:
    ``median``, ``min``, ``max`` over the rounds, ``times`` (each round's mean per call),
    ``calls`` (calls per round) and ``rounds``."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    calls = calls_per_round(runners, min_round) if min_round > 0 else dict.fromkeys(runners, 1)
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            times[name].append(runners[name].time(calls[name]) / calls[name])
    return {n: summary(times[n], calls=calls[n]) for n in names}


def summary(times: list[float], **extra: Any) -> dict[str, Any]:
    """Median, min, max and the rounds of a list of per-call times."""
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "rounds": len(times),
        "times": list(times),
        **extra,
    }


def spread(row: dict[str, Any]) -> str:
    """``median [min-max]`` in ms (or s above 10 s) of a timing summary."""
    scale, unit = (1.0, "s") if row["median"] >= 10 else (1e3, "ms")
    return f"{row['median'] * scale:.3g} [{row['min'] * scale:.3g}-{row['max'] * scale:.3g}] {unit}"
