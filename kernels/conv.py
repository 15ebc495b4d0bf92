"""Dispatcher for convolution: picks the CPU (Cython) or GPU (Numba CUDA) twin by array type, and on
the CPU the algorithm by name.

CPU algorithms (chosen by ``cnncore.functional``; inputs validated there):

- ``"im2col"``: column matrix of a block of output rows + one GEMM (any stride, padding,
  dilation);
- ``"shifted"``: stride 1, one GEMM per kernel tap over a shifted view of the padded image;
- ``"batched"``: im2col columns over blocks of whole images (N*Ho*Wo columns) for small maps;
- ``"winograd"``: stride 1, square 3x3 or 5x5 kernels, Winograd tiles
  (``cnncore_kernels.winograd``), forward, dx and dweight (dbias: a plain sum); with at most
  ``winograd.FUSED_MAX_CHANNELS`` input channels the backward is the adjoint of the forward's
  tiles, dx, dweight and dbias from one pass over dy (``winograd.conv2d_backward_fused``);
- ``"auto"``: the GEMM kernel's own choice between batched, im2col and shifted (for callers
  below the public API).

The GEMM algorithms are passed to ``_conv`` as its ``path`` argument (no module state).

GPU arrays always run the CUDA twin (one algorithm); ``algorithm`` must then be ``"auto"``.
"""

from __future__ import annotations

from cnncore_kernels.arrays import is_cuda_array, twin
from cnncore_kernels.buffers import pooled


def gemm_choice(N, C, K, kernel, stride, padding, dilation, out_hw, backward=False):
    """The GEMM kernel's own choice for one group: "batched" (columns over blocks of images, for
    small maps), "shifted" or "im2col" (what "auto" runs below the API)."""
    from cnncore_kernels import _conv

    if _conv.use_batched(N, out_hw[0] * out_hw[1], backward):
        return "batched"
    if _conv.use_shifted(C, K, kernel, stride, padding, dilation, out_hw[1]):
        return "shifted"
    return "im2col"


@pooled
def im2col(x, kernel, stride, padding, dilation):
    """Column matrix of one image. x: (C, H, W) -> (C*kh*kw, Ho*Wo), zero padded."""
    from cnncore_kernels import _conv

    return twin(x, _conv, "conv").im2col(x, kernel, stride, padding, dilation)


@pooled
def col2im(col, input_shape, kernel, stride, padding, dilation):
    """Adjoint of ``im2col``: col (C*kh*kw, Ho*Wo) -> (C, H, W), overlapping entries summed."""
    from cnncore_kernels import _conv

    return twin(col, _conv, "conv").col2im(col, input_shape, kernel, stride, padding, dilation)


@pooled
def conv2d_forward(x, weight, bias, stride, padding, dilation, algorithm="auto", activation=None):
    # inputs validated by cnncore.functional.conv2d; activation: None or "relu".  The GEMM and
    # Winograd paths apply bias and ReLU where they write y; the CUDA twin runs the ReLU afterwards.
    if is_cuda_array(x):
        from cnncore_kernels.cuda import activation as gpu_act
        from cnncore_kernels.cuda import conv as gpu

        y = gpu.conv2d_forward(x, weight, bias, stride, padding, dilation)
        return gpu_act.relu(y) if activation == "relu" else y
    if algorithm == "winograd":
        from cnncore_kernels import winograd

        tile = winograd.DEFAULT_TILE[int(weight.shape[2])]
        return winograd.conv2d_forward(
            x, weight, bias, padding, dilation, tile, relu=activation == "relu"
        )
    from cnncore_kernels import _conv

    return _conv.conv2d_forward(
        x, weight, bias, stride, padding, dilation, None, activation, path=algorithm
    )


@pooled
def conv2d_backward(
    dy,
    x,
    weight,
    stride,
    padding,
    dilation,
    need_dx=True,
    need_dweight=True,
    need_dbias=True,
    algorithm="auto",
):
    # inputs validated by cnncore.functional.conv2d_backward
    if is_cuda_array(x):
        from cnncore_kernels.cuda import conv as gpu

        return gpu.conv2d_backward(
            dy, x, weight, stride, padding, dilation, need_dx, need_dweight, need_dbias
        )
    from cnncore_kernels import _conv

    if algorithm == "winograd":
        from cnncore_kernels import winograd

        tile = winograd.DEFAULT_TILE[int(weight.shape[2])]
        if int(x.shape[1]) <= winograd.FUSED_MAX_CHANNELS and (need_dx or need_dweight):
            # few input channels: dx, dweight and dbias from one pass over dy (dbias alone is a
            # plain sum, below: the pass transforms every tile of dy)
            return winograd.conv2d_backward_fused(
                dy, x, weight, padding, dilation, tile, need_dx, need_dweight, need_dbias
            )
        dx = dw = db = None
        if need_dx:
            dx = winograd.conv2d_backward_input(dy, weight, x.shape[2:], padding, dilation, tile)
        if need_dweight:
            dw = winograd.conv2d_backward_weight(x, dy, weight.shape, padding, dilation, tile)
        if need_dbias:
            db = _conv.conv2d_backward(
                dy, x, weight, stride, padding, dilation, False, False, True
            )[2]
        return dx, dw, db
    return _conv.conv2d_backward(
        dy, x, weight, stride, padding, dilation, need_dx, need_dweight, need_dbias, path=algorithm
    )
