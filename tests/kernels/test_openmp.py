"""The OpenMP wait-policy scheme (cnncore_kernels/_openmp.py), in fresh interpreters: it must hold
whichever of torch and cnncore is imported first."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

REPORT = r"""
import os, threading
{imports}
from cnncore_kernels import _openmp
from cnncore import functional as F
import numpy as np
F.relu(np.ones(1 << 16, np.float32))  # a parallel region of our own
t = _openmp.throttle_thread()
tasks = len(os.listdir("/proc/self/task"))
print(os.environ.get("OMP_WAIT_POLICY"), t is not None and t.is_alive(), tasks)
"""


def report(imports: str, env_policy: str | None = None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    out = subprocess.run(
        [sys.executable, "-c", REPORT.format(imports=imports)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def cpus() -> int:
    return len(os.sched_getaffinity(0))


def test_cnncore_first_sets_passive_before_libgomp_loads():
    policy, throttled, _ = report("import cnncore\nimport torch")
    assert policy == "PASSIVE" and throttled == "False"


def test_torch_first_throttles_spinning_with_docked_threads():
    pytest.importorskip("torch")
    policy, throttled, threads = report("import torch\nimport cnncore")
    assert policy == "None" and throttled == "True"
    # the docked workers exist: the main thread, the helper and its cpus docked workers at least
    assert int(threads) >= 2 + cpus()


def test_a_policy_set_by_the_user_is_kept():
    pytest.importorskip("torch")
    policy, throttled, _ = report("import torch\nimport cnncore", env_policy="ACTIVE")
    assert policy == "ACTIVE" and throttled == "False"


def test_helper_region_runs_with_the_threads_asked_for():
    from cnncore_kernels import _threads

    assert _threads.run_parallel_region(3) == 3
