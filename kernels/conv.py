"""Dispatcher for convolution: picks the CPU (Cython) or GPU (Numba CUDA) twin by array type."""

from __future__ import annotations

from cnncore_kernels.arrays import is_cuda_array


def conv2d_forward(x, weight, bias, stride, padding, dilation, activation=None):
    # inputs validated by cnncore.functional.conv2d; activation: None or "relu".  The CPU twin
    # applies bias and ReLU where it writes y; the CUDA twin runs its ReLU kernel afterwards.
    if is_cuda_array(x):
        from cnncore_kernels.cuda import conv as gpu

        y = gpu.conv2d_forward(x, weight, bias, stride, padding, dilation)
        if activation == "relu":
            from cnncore_kernels.cuda import activation as gpu_act

            y = gpu_act.relu(y)
        return y
    from cnncore_kernels import _conv

    return _conv.conv2d_forward(x, weight, bias, stride, padding, dilation, activation=activation)


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
