"""Loaded by pytest before any test or benchmark module: import cnncore_kernels first, so its
OpenMP wait policy is in place before PyTorch (an oracle and peer here) loads its OpenMP runtime."""

import cnncore_kernels  # noqa: F401
