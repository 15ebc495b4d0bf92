"""The package docstrings that map the kernels layer name every module in it."""

from __future__ import annotations

import ast
from pathlib import Path

import cnncore_kernels

KERNELS = Path(cnncore_kernels.__file__).parent


def test_cuda_package_docstring_names_every_module():
    cuda = KERNELS / "cuda"
    doc = ast.get_docstring(ast.parse((cuda / "__init__.py").read_text()))
    modules = sorted(p.stem for p in cuda.glob("*.py") if p.stem != "__init__")
    assert len(modules) > 10
    missing = [m for m in modules if f"``{m}``" not in doc]
    assert not missing, f"kernels/cuda/__init__.py does not name {missing}"
