"""The optional dependencies of ``cnncore.distributed``, imported when a function needs them."""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = "pip install 'cnncore[distributed]'"


def require(module: str) -> ModuleType:
    """Import ``module`` (``"dask.array"``, ``"distributed"``, ``"zarr"``, ...) or raise an
    ``ImportError`` that says how to install the ``[distributed]`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        raise ImportError(
            f"cnncore.distributed needs {top!r}, which is not installed: {INSTALL_HINT}"
        ) from err
