"""Compile every CUDA kernel to PTX without a GPU: ``python -m cnncore_kernels.cuda._ptxcheck``.

The simulator runs the kernels as Python, so it never type-checks them the way the CUDA target
does (constant local-array sizes, float32 arithmetic, supported functions).  This compiles each
kernel for a real architecture with NVVM (needs NVIDIA's ``cuda-toolkit[nvrtc,nvvm]`` wheels, no
driver, no GPU) and reports the kernels that use local memory or float64 arithmetic where they
should not.  Run it without ``NUMBA_ENABLE_CUDASIM``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from numba import boolean, cuda, float32, float64, int32, int64, uint64

from cnncore_kernels.cuda import (
    _gemm,
    _launch,
    activation,
    checks,
    conv,
    elementwise,
    loss,
    normalization,
    optim,
    patches,
    pooling,
    window,
)

f1, f3, f4 = float32[::1], float32[:, :, ::1], float32[:, :, :, ::1]
i1, i4, d1 = int64[::1], int64[:, :, :, ::1], float64[::1]
I, F = int64, float32

# (kernel, argument types, float64 allowed): one signature per kernel, as the launchers call it
KERNELS = [
    (_launch._fill, (f1, F, I), False),
    (_launch._fill, (i1, I, I), False),
    (_launch._copy4d, (float32[:, :, :, :], f4, I), False),
    (_launch._copy4d, (int64[:, :, :, :], i4, I), False),
    (_launch._sum_middle, (f1, I, I, I, F, f1), False),
    (elementwise._add, (f1, f1, f1, I), False),
    (elementwise._axpy, (F, f1, f1, I), False),
    (elementwise._scale, (F, f1, f1, I), False),
    (_gemm._sgemm, (I, I, I, F, f1, I, I, I, I, f1, I, I, I, I, F, f1, I, I, I, I, f1, I), False),
    (conv._im2col, (f4,) + (I,) * 13 + (f1,), False),
    (conv._col2im, (f1,) + (I,) * 16 + (f4,), False),
    (pooling._max_pool, (f4,) + (I,) * 8 + (f4, i4), False),
    (pooling._max_pool_values, (f4,) + (I,) * 8 + (f4,), False),
    (pooling._index_bounds, (i4, I, i1, i1), False),
    (pooling._candidate_ranges, (i1, i1, I, I, I, I, i1, i1), False),
    (pooling._max_pool_backward, (f4, i4, i1, i1, f4), False),
    (pooling._avg_pool, (f4,) + (I,) * 9 + (f4,), False),
    (pooling._avg_pool_backward, (f4,) + (I,) * 9 + (f4,), False),
    (pooling._channel_max, (f4, I, f4, i4), False),
    (pooling._channel_max_backward, (f4, i4, I, f4), False),
    (pooling._broadcast_planes, (f4, F, f4), False),
    (normalization._lrn, (f4, I, I, F, F, F, I, f4), False),
    (normalization._lrn_backward_prep, (f4, f4, I, I, F, F, F, I, f4, f4), False),
    (normalization._lrn_backward, (f4, f4, f4, f4, I, I, F, f4), False),
    (normalization._channel_mean, (f4, F, f3), False),
    (normalization._filter_w, (f3, f1, I, f3), False),
    (normalization._filter_h, (f3, f1, I, I, f1, f1, f3), False),
    (normalization._centered_moments, (f4, f4, f3, F, I, f3, f3, f3), False),
    (normalization._sqrt_planes, (f3,), False),
    (normalization._image_mean, (f3, F, f1, f1), True),
    (normalization._den, (f3, f1, F, I, f3), False),
    (normalization._divide, (f4, f3, f3, f4), False),
    (normalization._sum_v, (f3, f3, F, f3), False),
    (normalization._d_den, (f3, f3), False),
    (normalization._d_c, (f3, f3, f1, f1, F, d1), True),
    (normalization._d_q, (f3, f3, f1, d1, F, F, I, f1, f1), True),
    (normalization._r2_sdy, (f3, f3, f3, f3, F, f1, f1), False),
    (normalization._lcn_grad, (f4, f4, f3, f3, f3, f3, F, f4), False),
    (activation._relu, (f1, f1, I), False),
    (activation._relu_backward, (f1, f1, f1, I), False),
    (activation._tanh, (f1, f1, I), False),
    (activation._tanh_backward, (f1, f1, f1, I), False),
    (activation._softmax, (f1, I, I, I, f1), False),
    (activation._softmax_backward, (f1, f1, I, I, I, f1), False),
    (loss._ce_columns, (f1, i1, I, I, I, f1, f1), False),
    (loss._ce_columns, (f1, int32[::1], I, I, I, f1, f1), False),
    (loss._ce_totals, (f1, i1, I, d1), True),
    (loss._ce_scale, (f1, d1), True),
    (optim._sgd, (f1, f1, f1, I, F, F, F, F, I, I, I, I, I), False),
    (activation._dropout, (f1, uint64, uint64, uint64, F, f1, I), False),
    (window._window, (f4, I, I, f4, I), False),
    (window._window, (float32[:, :, :, :], I, I, f4, I), False),
    (window._paste, (f4, f4, I, I, I, I, I), False),
    (window._paste, (float32[:, :, :, :], f4, I, I, I, I, I), False),
    (patches._gather, (f4, i1, boolean, I, I, I, f4, I), False),
    (patches._scatter, (float32[:, ::1], I, f4, I), False),
    (checks._first_bad, (i1, I, I, I, I, I, boolean, I, i1), False),
    (checks._first_bad, (int32[::1], I, I, I, I, I, boolean, I, i1), False),
]

_F64_OP = re.compile(r"^\s*(add|sub|mul|div|fma|sqrt)\.[a-z.]*f64", re.M)


class _Device:
    """Stands in for the current device: numba-cuda asks it for the compute capability when a
    kernel calls a device function (there is no driver here to ask)."""

    compute_capability = (9, 0)


def check(cc: tuple[int, int]) -> list[str]:
    """Compile every kernel for ``cc``; returns the problems found (empty when all is well)."""
    from numba.cuda import dispatcher

    _Device.compute_capability = cc
    dispatcher.get_current_device = lambda: _Device
    problems = []
    for kernel, sig, f64_ok in KERNELS:
        name = f"{kernel.py_func.__module__.rsplit('.', 1)[-1]}.{kernel.py_func.__name__}"
        t0 = time.perf_counter()
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
        except Exception as e:  # a typing or lowering error: the kernel would not run on a GPU
            problems.append(f"{name}: does not compile: {type(e).__name__}: {e}")
            continue
        local = len(re.findall(r"\b(?:ld|st)\.local", ptx))
        f64 = len(_F64_OP.findall(ptx))
        print(
            f"{name:40s} {time.perf_counter() - t0:6.2f} s  local ld/st {local:3d}  f64 ops {f64}"
        )
        if local:
            problems.append(f"{name}: {local} local-memory loads/stores (register spill or array)")
        if f64 and not f64_ok:
            problems.append(f"{name}: {f64} float64 arithmetic instructions in a float32 kernel")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="9.0", help="compute capability, e.g. 8.0 or 9.0")
    args = parser.parse_args(argv)
    major, minor = (int(v) for v in args.cc.split("."))
    problems = check((major, minor))
    for p in problems:
        print("PROBLEM:", p)
    print(f"{len(KERNELS)} kernels, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
