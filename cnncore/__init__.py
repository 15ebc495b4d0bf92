"""cnncore: CNN kernels (Cython on the CPU, Numba CUDA on the GPU) with a thin training engine.

``import cnncore`` is enough: the subpackages are imported on first use (PEP 562), so the import
itself stays light (NumPy only; no SciPy, Numba, Dask, matplotlib or PyTorch).

- ``cnncore.functional``: the validated kernels (``conv2d``, ``max_pool2d``, ...).
- ``cnncore.nn``: ``Module``, ``Parameter``, the layers, ``from_torch`` / ``to_torch``.
- ``cnncore.optim``, ``cnncore.data``, ``cnncore.train``, ``cnncore.checkpoint``: training.
- ``cnncore.models``: the lecture's architectures and the patch classifiers.
- ``cnncore.dense``: exact pixelwise classification (patch scanning, FCN, d-sparse kernels).
- ``cnncore.distributed``: the same on Dask (optional extra ``[distributed]``).
- ``cnncore.memory``: the freed blocks the CPU kernels keep for reuse (limit, state, emptying).
- ``cnncore.summary(model, input_shape=None)``: the per-layer table (rows), ``print_summary``
  prints it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cnncore._version import __version__

# cnncore.device imports cnncore_kernels, which throttles libgomp's spinning (see
# cnncore_kernels/_openmp.py): keep it eager, so that it is in place before the first kernel.
from cnncore.device import cuda_available

# Subpackages and modules reached as attributes, imported on first access.
_SUBMODULES = (
    "checkpoint",
    "data",
    "dense",
    "device",
    "distributed",
    "functional",
    "memory",
    "models",
    "nn",
    "optim",
    "summarize",
    "train",
)
# Functions reached as attributes: name -> the module that defines it (imported on first access).
_FUNCTIONS = {
    "format_summary": "cnncore.summarize",
    "print_summary": "cnncore.summarize",
    "show_config": "cnncore._show_config",
    "summary": "cnncore.summarize",
}

__all__ = ["__version__", "cuda_available", *_SUBMODULES, *_FUNCTIONS]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on demand
    from cnncore import (  # noqa: F401
        checkpoint,
        data,
        dense,
        device,
        distributed,
        functional,
        memory,
        models,
        nn,
        optim,
        summarize,
        train,
    )
    from cnncore._show_config import show_config  # noqa: F401
    from cnncore.summarize import format_summary, print_summary, summary  # noqa: F401


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"cnncore.{name}")  # the import binds it in globals()
    if name in _FUNCTIONS:
        value = getattr(importlib.import_module(_FUNCTIONS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnncore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
