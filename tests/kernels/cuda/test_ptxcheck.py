"""The PTX compile check (``python -m cnncore_kernels.cuda._ptxcheck``) lists every CUDA kernel.

The check itself needs NVIDIA's compiler wheels and runs in ``.ci/lint.sh``; here, without them,
its list is compared with the ``@cuda.jit`` kernels found in the source of ``kernels/cuda``, so a
new kernel that nobody added to the list fails this test instead of escaping the check.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import tests.kernels.cuda.sim  # noqa: F401  (the simulator, before numba.cuda is imported)
from cnncore_kernels.cuda import _ptxcheck

CUDA_DIR = Path(_ptxcheck.__file__).parent


def _is_kernel_decorator(node: ast.expr) -> bool:
    """``@cuda.jit`` or ``@cuda.jit(...)`` without ``device=True`` (device functions are compiled
    inside the kernels that call them)."""
    call = node if isinstance(node, ast.Call) else None
    target = call.func if call else node
    if not (isinstance(target, ast.Attribute) and target.attr == "jit"):
        return False
    if call is None:
        return True
    return not any(
        kw.arg == "device" and isinstance(kw.value, ast.Constant) and kw.value.value is True
        for kw in call.keywords
    )


def source_kernels() -> set[tuple[str, str]]:
    """(module, function) of every ``@cuda.jit`` kernel defined in ``kernels/cuda/*.py``."""
    found = set()
    for path in sorted(CUDA_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef) and any(
                _is_kernel_decorator(d) for d in node.decorator_list
            ):
                found.add((path.stem, node.name))
    return found


def test_the_source_scan_finds_kernels():
    kernels = source_kernels()
    assert ("_gemm", "_sgemm") in kernels and ("pooling", "_max_pool") in kernels
    assert ("_launch", "unravel4") not in kernels  # a device function
    assert len(kernels) > 40


def test_every_kernel_is_compiled_by_the_ptx_check():
    listed = {
        (k.py_func.__module__.rsplit(".", 1)[-1], k.py_func.__name__)
        for k, _, _ in _ptxcheck.KERNELS
    }
    missing = source_kernels() - listed
    assert not missing, f"add these kernels to _ptxcheck.KERNELS: {sorted(missing)}"
    assert not listed - source_kernels()


def test_every_listed_signature_has_the_kernels_arity():
    for kernel, sig, _ in _ptxcheck.KERNELS:
        params = inspect.signature(kernel.py_func).parameters
        assert len(sig) == len(params), (kernel.py_func.__name__, len(sig), list(params))
