"""Does the speed of our kernels depend on whether torch or cnncore is imported first?

``python -m bench.import_order [--rounds 5] [--busy] [--glue 0.002]`` runs one workload in fresh
subprocesses, alternating the two import orders (cnncore first, torch first, cnncore first, ...),
and prints the median time of each order and their ratio.  ``--busy`` starts a second process that
spins on one core for the whole run (the shared-machine case where libgomp's spinning threads hurt);
``--glue`` runs that many CPU seconds of Python between kernel calls, as a training loop does; the
wall time of kernels and glue is counted: idle OpenMP threads that spin through the glue take a
core from it and from the other process.
It measures and reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

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


def clean_env() -> dict[str, str]:
    """This environment without OMP_WAIT_POLICY: importing ``bench`` imported cnncore_kernels,
    which set it to PASSIVE here, and the children must start as a user's process does."""
    return {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}


ORDERS = {
    "cnncore first": "import cnncore\nimport torch",
    "torch first": "import torch\nimport cnncore",
}


def run_once(order: str, reps: int, glue: float) -> float:
    code = WORKLOAD.format(imports=ORDERS[order], reps=reps, glue=glue)
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
        env=clean_env(),
    )
    return float(out.stdout.split()[1])  # the median of the reps in that process


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--busy", action="store_true", help="a second process spins on one core")
    p.add_argument(
        "--glue", type=float, default=0.0, help="CPU seconds of Python work between kernel calls"
    )
    a = p.parse_args()
    busy = None
    if a.busy:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
    try:
        res: dict[str, list[float]] = {o: [] for o in ORDERS}
        for _ in range(a.rounds):
            for order in ORDERS:
                res[order].append(run_once(order, a.reps, a.glue))
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    med = {o: statistics.median(t) for o, t in res.items()}
    for o, t in res.items():
        print(f"{o:14s} median {med[o] * 1e3:7.1f} ms  rounds {[round(s * 1e3, 1) for s in t]}")
    print(f"torch-first / cnncore-first: {med['torch first'] / med['cnncore first']:.3f}")


if __name__ == "__main__":
    main()
