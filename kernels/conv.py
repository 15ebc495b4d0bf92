"""Dispatcher for convolution: picks the CPU (Cython) or GPU (Numba CUDA) twin by array type."""

from __future__ import annotations

from cnncore_kernels.arrays import is_cuda_array


def conv2d_forward(x, weight, bias, stride, padding, dilation):
    # inputs validated by cnncore.functional.conv2d
    if is_cuda_array(x):
        from cnncore_kernels.cuda import conv as gpu

        return gpu.conv2d_forward(x, weight, bias, stride, padding, dilation)
    from cnncore_kernels import _conv

    return _conv.conv2d_forward(x, weight, bias, stride, padding, dilation)


def conv2d_backward(
    dy, x, weight, stride, padding, dilation, need_dx=True, need_dweight=True, need_dbias=True
):
    # inputs validated by cnncore.functional.conv2d_backward
    if is_cuda_array(x):
        from cnncore_kernels.cuda import conv as gpu

        return gpu.conv2d_backward(
            dy, x, weight, stride, padding, dilation, need_dx, need_dweight, need_dbias
        )
    from cnncore_kernels import _conv

    return _conv.conv2d_backward(
        dy, x, weight, stride, padding, dilation, need_dx, need_dweight, need_dbias
    )
