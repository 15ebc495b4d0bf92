"""Benchmarks of cnncore (see bench/report.py for the numbers' conventions).

``CNNCORE_BENCH_IMPORT_FIRST`` chooses which library loads first (the first to load libgomp fixes
its wait policy for both, see ``bench.peer``): ``cnncore`` (default: our passive policy) or
``torch`` (libgomp's default; cnncore then warns).  The peer process of the sweep uses ``torch``.
"""

import os

# the wait policy in the environment before anything here loaded libgomp (see machine.py)
OMP_WAIT_POLICY_AT_START = os.environ.get("OMP_WAIT_POLICY")
if os.environ.get("CNNCORE_BENCH_IMPORT_FIRST", "cnncore") == "torch":
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
import cnncore_kernels  # noqa: F401, E402  (before torch unless asked otherwise)
