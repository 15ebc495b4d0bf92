"""CPU-only installs: nothing outside kernels/cuda imports numba; all works without it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import cnncore

SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    sys.modules["numba"] = None  # any "import numba" now raises ImportError
    import numpy as np
    import cnncore, cnncore_kernels
    names = []
    for pkg in (cnncore, cnncore_kernels):
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if not m.name.startswith("cnncore_kernels.cuda."):
                importlib.import_module(m.name)
                names.append(m.name)
    assert len(names) > 20, names
    import cnncore.functional as F
    from cnncore import nn
    assert not cnncore.cuda_available()
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(12, 2))
    model.backward(np.ones_like(model(x)))
    y, idx = F.max_pool2d(x, 2)
    print("ok", len(names))
    """
)


def test_cpu_only_import_never_touches_numba(tmp_path):
    """Run from a folder outside the checkout with ``python -I`` (no ``PYTHONPATH``, no current
    folder on ``sys.path``), so the installed package is imported, not the source tree."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-I", "-c", SCRIPT], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


def test_cuda_available_is_false_under_the_simulator():
    assert os.environ["NUMBA_ENABLE_CUDASIM"] == "1"
    assert cnncore.cuda_available() is False
