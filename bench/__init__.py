"""Benchmarks of cnncore (see bench/report.py for the numbers' conventions).

``CNNCORE_BENCH_IMPORT_FIRST`` chooses which library loads first: ``cnncore`` (default) or
``torch`` (the peer process of the sweep; see ``bench.peer`` for its libgomp settings).
"""

import os

# libgomp's settings in the environment before anything here loaded libgomp (see machine.py)
LIBGOMP_SETTINGS_AT_START = {
    k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ
}
if os.environ.get("CNNCORE_BENCH_IMPORT_FIRST", "cnncore") == "torch":
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
import cnncore_kernels  # noqa: F401, E402  (before torch unless asked otherwise)
