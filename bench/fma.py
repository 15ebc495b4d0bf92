"""The machine's FP32 FMA peak, measured: a tiny FMA-throughput loop compiled at run time.

A virtual machine's /proc/cpuinfo often reports the nominal clock, not the boost clock the cores
run at, so ISA x cores x that clock can come out below the sgemm rate actually measured (157
against 177 GFLOP/s on a 2-core Zen 3 VM).  ``measure()`` compiles ``FMA_LOOP`` with the system C
compiler (``$CC``, else ``cc``, ``gcc``, ``clang``) at ``-O2 -march=native`` into a temporary
folder and runs it: one thread per core, each with ``ACCUMULATORS`` independent vector
accumulators (enough to cover the FMA latency on two pipes), vectors as wide as the ISA's
(``__AVX512F__``: 16 floats, ``__AVX__``: 8, else 4).  Each thread's rate counts the CPU time
it got, so a shared machine's other processes do not pull the peak down; the sum over the
threads, best of ``runs`` runs, is the peak.  Divided by the FLOP per cycle of the ISA it gives
the clock the cores really ran at.

Without a compiler (or when the loop fails) ``measure()`` returns None and ``peak()`` falls back
to the estimate from /proc/cpuinfo (``bench.machine.fma_peak``), labelled as such.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Any

ACCUMULATORS = 12  # FMA latency 4-5 cycles x 2 pipes: 10 in flight keep both pipes busy

FMA_LOOP = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
#define ACC %(acc)d
typedef float vec __attribute__((vector_size(LANES * 4)));

static long iters;
static volatile float seed = 1.0f;
static float sink[256];
static double cpu_seconds[256];

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void *loop(void *arg) {
    long id = (long)arg;
    double c0 = cpu_now();
    vec m, a, acc[ACC];
    for (int l = 0; l < LANES; l++) { m[l] = 0.999999f * seed; a[l] = 1e-6f * seed; }
    for (int j = 0; j < ACC; j++) acc[j] = m * (float)(j + 1);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int j = 0; j < ACC; j++) acc[j] = acc[j] * m + a;  /* one FMA per lane */
    }
    float s = 0;
    for (int j = 0; j < ACC; j++) for (int l = 0; l < LANES; l++) s += acc[j][l];
    sink[id] = s;
    cpu_seconds[id] = cpu_now() - c0;
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    int threads = atoi(argv[1]);
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    iters = atol(argv[2]);
    pthread_t th[256];
    double t0 = now();
    for (long k = 0; k < threads; k++) pthread_create(&th[k], NULL, loop, (void *)k);
    for (int k = 0; k < threads; k++) pthread_join(th[k], NULL);
    double dt = now() - t0;
    double per_thread = 2.0 * LANES * ACC * (double)iters;
    double on_cpu = 0.0;  /* the sum of each thread's rate while it ran on a core */
    for (int k = 0; k < threads; k++) on_cpu += per_thread / cpu_seconds[k];
    printf("%%.6f %%.6f %%d %%g\n", per_thread * threads / dt / 1e9, on_cpu / 1e9, LANES, sink[0]);
    return 0;
}
"""


def compiler() -> str | None:
    """The system C compiler: ``$CC``, else the first of cc, gcc, clang on the PATH."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def build(folder: str, cc: str) -> str:
    """Compile the loop into ``folder``; returns the executable's path (CalledProcessError when
    the compiler fails)."""
    src = os.path.join(folder, "fma_loop.c")
    exe = os.path.join(folder, "fma_loop")
    with open(src, "w") as f:
        f.write(FMA_LOOP % {"acc": ACCUMULATORS})
    cmd = [cc, "-O2", "-march=native", "-pthread", "-o", exe, src]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)
    return exe


def measure(threads: int, seconds: float = 0.3, runs: int = 3) -> dict[str, Any] | None:
    """The measured FMA peak of ``threads`` threads (one per core), in GFLOP/s: the best of
    ``runs`` runs of about ``seconds`` each.  Each thread's rate counts the CPU time it ran
    (``CLOCK_THREAD_CPUTIME_ID``), so other processes taking turns on the cores do not lower the
    peak; the wall-clock rates are kept beside (``wall_readings``).  Returns ``gflops``,
    ``lanes`` (floats per vector), ``threads``, ``readings``, ``wall_readings`` and ``compiler``;
    None without a compiler or when the loop fails."""
    cc = compiler()
    if cc is None:
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="cnncore_fma_") as folder:
            exe = build(folder, cc)
            # calibrate: a short run gives the rate, then size the runs to ``seconds``
            rate, _, lanes = _run(exe, threads, 200_000)
            per_iter = 2.0 * lanes * ACCUMULATORS * threads / (rate * 1e9)
            iters = max(1_000, int(seconds / per_iter))
            got = [_run(exe, threads, iters) for _ in range(runs)]
    except (OSError, subprocess.SubprocessError, ValueError, ZeroDivisionError):
        return None
    on_cpu = [g[1] for g in got]
    return {
        "gflops": max(on_cpu),
        "lanes": lanes,
        "threads": threads,
        "readings": [round(r, 2) for r in on_cpu],
        "wall_readings": [round(g[0], 2) for g in got],
        "compiler": f"{os.path.basename(cc)} -O2 -march=native",
    }


def _run(exe: str, threads: int, iters: int) -> tuple[float, float, int]:
    """(wall-clock GFLOP/s, on-CPU GFLOP/s, lanes) of one run."""
    out = subprocess.run(
        [exe, str(threads), str(iters)], check=True, capture_output=True, text=True, timeout=60
    )
    wall, on_cpu, lanes, _ = out.stdout.split()
    return float(wall), float(on_cpu), int(lanes)


def peak(threads: int, seconds: float = 0.3, runs: int = 3) -> dict[str, Any]:
    """The FMA peak the report uses: measured when a compiler exists, else the /proc/cpuinfo
    estimate.  The result has the keys of ``bench.machine.fma_peak`` (``gflops``,
    ``flops_per_cycle_per_core``, ``isa``, ``clock_ghz``, ``clock_source``, ``cores``) plus
    ``measured`` (bool) and ``basis`` (a sentence saying how the figure was obtained)."""
    from bench import machine

    # one thread per core: threads sharing a core would each count the core's full rate
    threads = max(1, min(threads, machine.usable_cores()))
    got = measure(threads, seconds, runs)
    if got is None:
        est = machine.fma_peak(threads, machine.busy_clock_ghz(min(seconds, 0.3)))
        clock = est["clock_ghz"]
        est["measured"] = False
        est["basis"] = (
            f"estimate, not measured (no C compiler for the FMA loop): {threads} cores x "
            f"{est['flops_per_cycle_per_core']} FLOP/cycle ({est['isa']}) x "
            + ("?" if clock is None else f"{clock:.2f}")
            + f" GHz from {est['clock_source']}, a nominal clock on many virtual machines"
        )
        return est
    per_cycle, isa = machine.fp32_flops_per_cycle(machine.cpu_facts())
    clock = got["gflops"] / (threads * per_cycle)
    return {
        "gflops": got["gflops"],
        "flops_per_cycle_per_core": per_cycle,
        "isa": isa,
        "clock_ghz": clock,
        "clock_source": "the measured FMA rate / (cores x FLOP per cycle)",
        "cores": threads,
        "measured": True,
        "readings": got["readings"],
        "wall_readings": got["wall_readings"],
        "lanes": got["lanes"],
        "basis": (
            f"measured: an FMA loop ({got['compiler']}, {got['lanes']}-float vectors, "
            f"{ACCUMULATORS} independent accumulators, {threads} threads, rate per CPU second), "
            f"best of {len(got['readings'])} runs; = {threads} cores x {per_cycle} FLOP/cycle x "
            f"{clock:.2f} GHz effective"
        ),
    }
