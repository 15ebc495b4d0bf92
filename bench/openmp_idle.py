"""What idle OpenMP threads cost between kernels, in both import orders.

``python -m bench.openmp_idle [--rounds 3]`` runs, in fresh subprocesses (cnncore first, torch
first, alternating), 200 small parallel kernels (``relu`` of 64K floats) with a 2 ms sleep after
each, and prints the wall time and the CPU time the process used.  Spinning idle threads show up
as CPU time burnt during the sleeps and as slower kernels.  Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

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


def clean_env() -> dict[str, str]:
    """This environment without OMP_WAIT_POLICY: importing ``bench`` imported cnncore_kernels,
    which set it to PASSIVE here, and the children must start as a user's process does."""
    return {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}


ORDERS = {
    "cnncore first": "import cnncore\nimport torch",
    "torch first": "import torch\nimport cnncore",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    for _ in range(a.rounds):
        for order, imports in ORDERS.items():
            out = subprocess.run(
                [sys.executable, "-W", "ignore", "-c", CODE.format(imports=imports)],
                capture_output=True,
                text=True,
                check=True,
                cwd=tempfile.gettempdir(),
                env=clean_env(),
            )
            wall, cpu = (float(s) for s in out.stdout.split())
            print(f"{order:14s} wall {wall:.3f} s  cpu {cpu:.3f} s")


if __name__ == "__main__":
    main()
