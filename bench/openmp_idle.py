"""What idle OpenMP threads cost between kernels, in both import orders.

``python -m bench.openmp_idle [--rounds 3]`` runs, in fresh subprocesses (``bench.fresh_process``;
cnncore first, torch first, alternating), 200 small parallel kernels (``relu`` of 64K floats) with
a 2 ms sleep after each, and prints the wall time and the CPU time the process used.  Spinning
idle threads show up as CPU time burnt during the sleeps and as slower kernels.  Measures; asserts
nothing.
"""

from __future__ import annotations

import argparse

from bench import fresh_process

CODE = r"""
import resource, time
{imports}
import numpy as np
from cnncore import functional as F
a = np.ones(1 << 16, np.float32)
F.relu(a)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(200):
    F.relu(a)
    time.sleep(0.002)
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print(t1 - t0, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    for _ in range(a.rounds):
        for order in fresh_process.ORDERS:
            wall, cpu = (float(s) for s in fresh_process.run(CODE, order).split())
            print(f"{order:14s} wall {wall:.3f} s  cpu {cpu:.3f} s")


if __name__ == "__main__":
    main()
