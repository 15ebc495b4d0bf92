"""Benchmarks of cnncore (see bench/report.py for the numbers' conventions).

``CNNCORE_BENCH_IMPORT_FIRST`` chooses which library loads first: ``cnncore`` (default) or
``torch`` (the peer process of the sweep; see ``bench.peer`` for its libgomp settings).
"""

import os

if os.environ.get("CNNCORE_BENCH_IMPORT_FIRST", "cnncore") == "torch":
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
import cnncore_kernels  # noqa: F401, E402  (before torch unless asked otherwise)
