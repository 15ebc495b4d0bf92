"""Time of pixel65's dense prediction (d-sparse, one image) in this checkout against another one.

``python -m bench.dense_fusion [--size 256] [--rounds 5] [--peer /path/to/python]`` runs
``cnncore.dense.predict`` in fresh subprocesses, alternating this interpreter and ``--peer`` (for
example the main checkout's venv, to measure what a change saved), and prints the medians.  Each
subprocess reports the median wall time of a few predictions after one warm-up, and their median
CPU time (user + system of the process, which a shared machine disturbs far less).  Measures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

CODE = r"""
import resource
import time
import numpy as np
import cnncore
from cnncore import dense, models
m = models.pixel65().eval()
x = np.random.default_rng(0).standard_normal((1, 3, {size}, {size}), dtype=np.float32)
dense.predict(m, x, 65)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
ts, cs = [], []
for _ in range({reps}):
    c, t = cpu(), time.perf_counter()
    dense.predict(m, x, 65)
    ts.append(time.perf_counter() - t)
    cs.append(cpu() - c)
print(sorted(ts)[len(ts) // 2], sorted(cs)[len(cs) // 2])
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--peer", default=None, help="python of the checkout to compare with")
    a = p.parse_args()
    runs = {"this": sys.executable} | ({"peer": a.peer} if a.peer else {})
    res: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    code = CODE.format(size=a.size, reps=a.reps)
    for _ in range(a.rounds):
        for name, py in runs.items():
            # run outside the checkout, so each interpreter imports its own installed cnncore
            out = subprocess.run(
                [py, "-W", "ignore", "-c", code],
                capture_output=True,
                text=True,
                cwd=tempfile.gettempdir(),
            )
            if out.returncode:
                raise SystemExit(out.stderr)
            wall, cpu_s = out.stdout.split()[-2:]
            res[name].append(float(wall))
            cpu[name].append(float(cpu_s))
    print(f"load average {os.getloadavg()[0]:.1f}")
    for name, t in res.items():
        print(
            f"{name:5s} median {statistics.median(t):.3f} s wall, "
            f"{statistics.median(cpu[name]):.3f} s CPU  rounds {[round(s, 3) for s in t]}"
        )
    if a.peer:
        for what, r in (("wall", res), ("CPU", cpu)):
            ratio = statistics.median(r["peer"]) / statistics.median(r["this"])
            print(f"peer / this ({what}): {ratio:.3f}")


if __name__ == "__main__":
    main()
