"""Benchmarks of cnncore (see bench/report.py for the numbers' conventions)."""

import cnncore_kernels  # noqa: F401  (before torch: sets the OpenMP wait policy first)
