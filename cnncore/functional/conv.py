"""Public, validated convolution: ``conv2d`` and ``conv2d_backward`` (semantics of torch conv2d)."""

from __future__ import annotations

from cnncore import _validate as v
from cnncore.device import concat, take
from cnncore.functional import conv_selection as _alg
from cnncore_kernels import conv as _k
from cnncore_kernels.arrays import is_cuda_array

# BLAS takes 32-bit ints: every matrix dimension and leading dimension must stay below this.
_BLAS_MAX = 2**31 - 1


def _conv_geometry(x, weight, stride, padding, dilation, x_name="x", groups=1):
    stride = v.positive_pair(stride, "stride")
    padding = v.nonneg_pair(padding, "padding")
    dilation = v.positive_pair(dilation, "dilation")
    N, C, H, W = (int(s) for s in x.shape)
    K, Cw, kh, kw = (int(s) for s in weight.shape)
    if C % groups or K % groups:
        raise ValueError(
            f"groups={groups} must divide the input channels and the filters: {x_name} shape "
            f"{tuple(x.shape)}, weight shape {tuple(weight.shape)}"
        )
    if Cw * groups != C:
        per_group = f" ({C // groups} per group of {groups})" if groups > 1 else ""
        raise ValueError(
            f"weight has {Cw} input channels but {x_name} has {C}{per_group}: "
            f"{x_name} shape {tuple(x.shape)}, weight shape {tuple(weight.shape)}"
        )
    Ho, Wo = v.output_hw((H, W), (kh, kw), stride, padding, dilation, x_name)
    Hp, Wp = H + 2 * padding[0], W + 2 * padding[1]
    if max(Hp * Wp, C * kh * kw, Ho * Wo, K) > _BLAS_MAX or C * Hp * Wp > 2**62:
        raise ValueError(
            f"{x_name} of shape {tuple(x.shape)} with weight {tuple(weight.shape)} is too large "
            "(a plane, C*kh*kw or Ho*Wo would exceed 2**31 elements)"
        )
    v.check_size((N, K, Ho, Wo), "output")
    return stride, padding, dilation, (N, K, Ho, Wo)


def conv2d(
    x,
    weight,
    bias=None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    algorithm: str = "auto",
):
    """2-D convolution (cross-correlation), as ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
        float32 or float64 on the CPU; float32 GPU arrays select the CUDA kernels.
    weight : array, shape (K, C // groups, kh, kw)
    bias : array, shape (K,), optional
    stride, padding, dilation : int or (int, int)
        Zero padding of ``padding`` on each side.
    groups : int
        Channels and filters split into ``groups`` independent convolutions (AlexNet's two
        towers): filter group ``g`` sees input channels ``g*C/groups .. (g+1)*C/groups - 1``.
    algorithm : "auto", "im2col", "shifted", "batched" or "winograd"
        CPU algorithm (see ``cnncore.functional.conv_selection``): "auto" follows the documented
        rule, or the cached measured choice when ``set_conv_autotune(True)``.  A name that does
        not apply (e.g. "winograd" with stride 2) raises ValueError.  GPU arrays run the CUDA
        kernels and accept only "auto".

    Returns
    -------
    y : array, shape (N, K, Ho, Wo)
        ``Ho = (H + 2*ph - dh*(kh-1) - 1) // sh + 1`` (likewise ``Wo``).
    """
    return _conv2d(x, weight, bias, stride, padding, dilation, groups, algorithm, None)


def _conv2d(x, weight, bias, stride, padding, dilation, groups, algorithm, activation):
    """``conv2d``, followed by ``activation`` (None or "relu") applied where y is written."""
    x = v.any_float_array(x, "x", 4)
    weight = v.any_float_array(weight, "weight", 4)
    v.same_device_and_dtype(x, "x", weight, "weight")
    if bias is not None:
        bias = v.any_float_array(bias, "bias", 1)
        v.same_device_and_dtype(x, "x", bias, "bias")
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(
                f"bias must have shape ({weight.shape[0]},) to match weight {tuple(weight.shape)}, "
                f"got {tuple(bias.shape)}"
            )
    groups = v.positive_int(groups, "groups")
    stride, padding, dilation, _ = _conv_geometry(x, weight, stride, padding, dilation, "x", groups)
    algorithm = _device_algorithm(algorithm, x)
    if algorithm is not None:

        def run(name):
            return conv2d(x, weight, bias, stride, padding, dilation, groups, name)

        algorithm = _alg.resolve(
            algorithm, x, weight, stride, padding, dilation, groups, False, run
        )
    algorithm = algorithm or "auto"
    if groups == 1:
        return _k.conv2d_forward(x, weight, bias, stride, padding, dilation, algorithm, activation)
    C, K = int(x.shape[1]), int(weight.shape[0])
    Cg, Kg = C // groups, K // groups
    return concat(
        [
            _k.conv2d_forward(
                take(x, g * Cg, (g + 1) * Cg),
                weight[g * Kg : (g + 1) * Kg],
                None if bias is None else bias[g * Kg : (g + 1) * Kg],
                stride,
                padding,
                dilation,
                algorithm,
                activation,
            )
            for g in range(groups)
        ],
        axis=1,
    )


def _device_algorithm(algorithm, x):
    """Checked ``algorithm`` name; None for GPU arrays (CUDA kernels, "auto" only)."""
    algorithm = _alg.check_algorithm(algorithm)
    if is_cuda_array(x):
        if algorithm != "auto":
            raise ValueError(
                f"algorithm={algorithm!r} selects a CPU kernel; GPU arrays (x shape "
                f"{tuple(x.shape)}) run the CUDA kernels and take algorithm='auto'"
            )
        return None
    return algorithm


def conv2d_backward(
    dy,
    x,
    weight,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    algorithm: str = "auto",
    *,
    need_dx: bool = True,
    need_dweight: bool = True,
    need_dbias: bool = True,
):
    """Gradients of ``conv2d`` with respect to ``x``, ``weight`` and the bias.

    Parameters
    ----------
    dy : array, shape (N, K, Ho, Wo)
        Gradient of the loss with respect to the output of ``conv2d(x, weight, ...)``.
    x : array, shape (N, C, H, W)
    weight : array, shape (K, C // groups, kh, kw)
    groups : int, as in ``conv2d``
    algorithm : as in ``conv2d`` ("winograd": dx and dweight by Winograd; "auto" chooses, and
        autotunes, the backward separately from the forward)
    need_dx, need_dweight, need_dbias : bool
        Skip the gradients not needed (they come back as None), e.g. for a first or frozen layer.

    Returns
    -------
    dx : (N, C, H, W), dweight : (K, C // groups, kh, kw), dbias : (K,)
    """
    x = v.any_float_array(x, "x", 4)
    weight = v.any_float_array(weight, "weight", 4)
    dy = v.any_float_array(dy, "dy", 4)
    v.same_device_and_dtype(x, "x", weight, "weight")
    v.same_device_and_dtype(x, "x", dy, "dy")
    groups = v.positive_int(groups, "groups")
    stride, padding, dilation, out_shape = _conv_geometry(
        x, weight, stride, padding, dilation, "x", groups
    )
    if tuple(dy.shape) != out_shape:
        raise ValueError(
            f"dy must have the output shape {out_shape} of conv2d(x {tuple(x.shape)}, weight "
            f"{tuple(weight.shape)}), got {tuple(dy.shape)}"
        )
    need = (bool(need_dx), bool(need_dweight), bool(need_dbias))
    algorithm = _device_algorithm(algorithm, x)
    if algorithm is not None:

        def run(name):
            return conv2d_backward(
                dy,
                x,
                weight,
                stride,
                padding,
                dilation,
                groups,
                name,
                need_dx=need[0],
                need_dweight=need[1],
                need_dbias=need[2],
            )

        algorithm = _alg.resolve(algorithm, x, weight, stride, padding, dilation, groups, True, run)
    algorithm = algorithm or "auto"
    if groups == 1:
        return _k.conv2d_backward(dy, x, weight, stride, padding, dilation, *need, algorithm)
    C, K = int(x.shape[1]), int(weight.shape[0])
    Cg, Kg = C // groups, K // groups
    parts = [
        _k.conv2d_backward(
            take(dy, g * Kg, (g + 1) * Kg),
            take(x, g * Cg, (g + 1) * Cg),
            weight[g * Kg : (g + 1) * Kg],
            stride,
            padding,
            dilation,
            *need,
            algorithm,
        )
        for g in range(groups)
    ]
    return tuple(
        concat([p[i] for p in parts], axis=1 if i == 0 else 0) if need[i] else None
        for i in range(3)
    )


def im2col(
    x,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
):
    """Column matrix of one image: x (C, H, W) -> (C*kh*kw, Ho*Wo), zero padded (CPU only)."""
    x = v.float_array(x, "x", 3)
    k = v.positive_pair(kernel_size, "kernel_size")
    s, p, d = (
        v.positive_pair(stride, "stride"),
        v.nonneg_pair(padding, "padding"),
        v.positive_pair(dilation, "dilation"),
    )
    v.output_hw(x.shape[1:], k, s, p, d)
    return _k.im2col(x, k, s, p, d)


def col2im(
    col,
    input_shape,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
):
    """Adjoint of ``im2col``: col (C*kh*kw, Ho*Wo) -> (C, H, W), overlapping entries summed."""
    col = v.float_array(col, "col", 2)
    C, H, W = v.shape_tuple(input_shape, "input_shape", 3)
    k = v.positive_pair(kernel_size, "kernel_size")
    s, p, d = (
        v.positive_pair(stride, "stride"),
        v.nonneg_pair(padding, "padding"),
        v.positive_pair(dilation, "dilation"),
    )
    Ho, Wo = v.output_hw((H, W), k, s, p, d, "input")
    v.expect_shape(col, "col", (C * k[0] * k[1], Ho * Wo))
    return _k.col2im(col, (C, H, W), k, s, p, d)
