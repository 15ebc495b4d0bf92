"""cnncore: CNN kernels (Cython on the CPU, Numba CUDA on the GPU) with a thin training engine.

``cnncore.functional`` holds the validated kernels, ``cnncore.nn`` the modules, ``cnncore.optim``
the optimisers and ``cnncore.dense`` exact pixelwise classification with d-regularly sparse kernels.
"""

from cnncore import functional
from cnncore._show_config import show_config
from cnncore._version import __version__
from cnncore.device import cuda_available

__all__ = ["__version__", "cuda_available", "functional", "show_config"]
