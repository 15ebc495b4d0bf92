"""The OpenMP wait-policy scheme (cnncore_kernels/_openmp.py), in fresh interpreters: it must hold
whichever of torch and cnncore is imported first."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from cnncore_kernels import _openmp

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


def report(imports: str, env: dict[str, str] | None = None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in _openmp.USER_SETTINGS} | (env or {})
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


ORDERS = ["import cnncore\nimport torch", "import torch\nimport cnncore"]


@pytest.mark.parametrize("imports", ORDERS)
def test_either_import_order_throttles_spinning_with_docked_threads(imports):
    pytest.importorskip("torch")
    policy, throttled, threads = report(imports)
    assert policy == "None" and throttled == "True"
    # the docked workers exist: the main thread, the helper and its cpus docked workers at least
    assert int(threads) >= 2 + cpus()


def test_without_torch_the_same_scheme_runs():
    policy, throttled, _ = report("import cnncore")
    assert policy == "None" and throttled == "True"


@pytest.mark.parametrize("setting", [("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "1000")])
def test_libgomp_settings_of_the_user_are_kept(setting):
    policy, throttled, _ = report("import cnncore", env=dict([setting]))
    assert throttled == "False"
    assert policy == ("ACTIVE" if setting[0] == "OMP_WAIT_POLICY" else "None")


def test_helper_region_runs_with_the_threads_asked_for():
    from cnncore_kernels import _threads

    assert _threads.run_parallel_region(3) == 3
