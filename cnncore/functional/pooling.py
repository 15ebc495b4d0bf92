"""Public, validated pooling: max (with indices), average, channel max (maxout), global average.

Semantics follow torch (``max_pool2d(..., return_indices=True)``, ``avg_pool2d`` with
``ceil_mode=False``); see docs/contract/arrays.rst.  Each function validates once and calls the
dispatcher ``cnncore_kernels.pooling``, which runs the Cython CPU twin or the Numba CUDA twin.
"""

from __future__ import annotations

import numpy as np

from cnncore import _validate as v
from cnncore_kernels import checks as _kc
from cnncore_kernels import pooling as _k
from cnncore_kernels.arrays import is_cuda_array

# The max pool tracks a tap as a 32-bit offset inside the padded plane (see kernels/_pooling.pyx).
_PLANE_MAX = 2**31 - 1


def _valid_taps(start: int, k: int, d: int, size: int) -> int:
    """Number of taps ``start + t*d`` (t < k) inside ``[0, size)``."""
    return sum(1 for t in range(k) if 0 <= start + t * d < size)


def pool_params(
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """The validated ``(kernel, stride, padding, dilation)`` pairs of a 2-D pooling, checked
    without the input (the rules ``MaxPool2d``/``AvgPool2d`` apply at construction): sizes,
    strides and dilations >= 1, ``0 <= padding <= kernel_size // 2`` (torch's rule); ``stride``
    None means ``kernel_size``."""
    k = v.positive_pair(kernel_size, "kernel_size")
    s = k if stride is None else v.positive_pair(stride, "stride")
    p = v.nonneg_pair(padding, "padding")
    d = v.positive_pair(dilation, "dilation")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(
            f"padding {p} must be at most half of kernel_size {k} (padding <= kernel_size // 2, "
            "as in torch)"
        )
    return k, s, p, d


def _pool_geometry(
    in_hw, kernel_size, stride, padding, dilation, input_name, *, need_element, max_plane=False
):
    """Validated ``(kernel, stride, padding, dilation, (Ho, Wo))`` of a 2-D pooling.

    ``need_element``: refuse geometries where some window lies entirely in the padding (a max
    pool has nothing to choose there, an average without padding counted divides by zero).
    """
    k, s, p, d = pool_params(kernel_size, stride, padding, dilation)
    out = v.output_hw(tuple(in_hw), k, s, p, d, input_name)
    if max_plane and (in_hw[0] + 2 * p[0]) * (in_hw[1] + 2 * p[1]) > _PLANE_MAX:
        raise ValueError(
            f"{input_name} plane {tuple(in_hw)} with padding {p} is too large for max pooling "
            "(the padded plane must have fewer than 2**31 elements)"
        )
    if need_element:
        for axis in range(2):
            # only windows that start in the padding (o*s < p) can miss the input
            for o in range(min(out[axis], -(-p[axis] // s[axis]))):
                if _valid_taps(o * s[axis] - p[axis], k[axis], d[axis], in_hw[axis]) == 0:
                    raise ValueError(
                        f"with kernel_size {k}, stride {s}, padding {p} and dilation {d}, output "
                        f"{o} on axis {axis} of {input_name} {tuple(in_hw)} has a window that lies "
                        "entirely in the padding; use less padding or dilation"
                    )
    return k, s, p, d, out


def as_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _dtype_of(a) -> np.dtype:
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is not None:
        return np.dtype(cai["typestr"])
    return np.dtype(a.dtype)


def _index_array(indices, like, like_name: str):
    """An int64 index array on the device of ``like``, shape-checked.

    On the CPU the indices are returned as a C-contiguous int64 array (converted from any integer
    dtype); a GPU array must already be int64 (its range is checked on the device).  The device
    branch is validation, not a kernel: host indices of any integer dtype (or a torch CPU tensor)
    are converted here, device indices are never copied.
    """
    if is_cuda_array(like) != is_cuda_array(indices):
        where = "GPU" if is_cuda_array(like) else "CPU"
        raise TypeError(f"indices must be a {where} array like {like_name}")
    if is_cuda_array(indices):
        if _dtype_of(indices) != np.int64:
            raise TypeError(f"indices on the GPU must be int64, got dtype {_dtype_of(indices)}")
    else:
        if hasattr(indices, "detach") and hasattr(indices, "numpy"):  # a torch CPU tensor
            indices = indices.detach().numpy()
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"indices must be an integer array, got dtype {indices.dtype}")
        indices = np.ascontiguousarray(indices, dtype=np.int64)
    if tuple(indices.shape) != tuple(like.shape):
        raise ValueError(
            f"indices must have the shape of {like_name} {tuple(like.shape)}, "
            f"got {tuple(indices.shape)}"
        )
    return indices


def _check_range(indices, bound: int, what: str, groups: tuple[int, int, int] = (1, 1, 0)):
    """Refuse any index outside its range: ``indices[i] - g*step`` must lie in ``[0, bound)``,
    with ``(inner, G, step) = groups`` and ``g = (i // inner) % G`` (one group: ``[0, bound)``).
    One pass (on the device for GPU indices, with a single integer back)."""
    _refuse(_kc.first_out_of_range(indices, bound, groups=groups), bound, what, groups)


def _refuse(bad, bound: int, what: str, groups: tuple[int, int, int] = (1, 1, 0)):
    """ValueError for ``bad``, a range check's (flat position, value) of the first index out of
    range (see ``_check_range``); nothing when it is None."""
    if bad is not None:
        raise ValueError(
            f"indices out of range: {what} must lie in [0, {bound}), found "
            f"{bad[1] - ((bad[0] // groups[0]) % groups[1]) * groups[2]} at flat position "
            f"{bad[0]}"
        )


# ----------------------------------------------------------------------------------------------
# max pooling


def max_pool2d(
    x,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
):
    """2-D max pooling with indices, as torch's ``max_pool2d(..., return_indices=True)``.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
        float32 or float64 on the CPU; float32 GPU arrays select the CUDA kernels.
    kernel_size, stride, padding, dilation : int or (int, int)
        ``stride`` defaults to ``kernel_size``.  Padding counts as -inf and may be at most
        ``kernel_size // 2``; every window must hold at least one element of ``x``.

    Returns
    -------
    y : array, shape (N, C, Ho, Wo)
        ``Ho = (H + 2*ph - dh*(kh-1) - 1) // sh + 1`` (likewise ``Wo``).
    indices : int64 array, shape (N, C, Ho, Wo)
        Flat index ``h*W + w`` of the chosen element in its (H, W) plane.  Ties pick the first
        element in window order; a NaN always replaces the running max (torch's rule: NaN
        propagates, and the index is that of the last NaN in the window).
    """
    x = v.any_float_array(x, "x", 4)
    k, s, p, d, (Ho, Wo) = _pool_geometry(
        x.shape[2:], kernel_size, stride, padding, dilation, "x", need_element=True, max_plane=True
    )
    return _k.max_pool2d(x, k, s, p, d)


def max_pool2d_values(
    x,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
):
    """The values of :func:`max_pool2d` without the indices (inference; faster).

    x: (N, C, H, W) -> y: (N, C, Ho, Wo); same arguments and rules as :func:`max_pool2d`.
    """
    x = v.any_float_array(x, "x", 4)
    k, s, p, d, _ = _pool_geometry(
        x.shape[2:], kernel_size, stride, padding, dilation, "x", need_element=True, max_plane=True
    )
    return _k.max_pool2d_values(x, k, s, p, d)


def max_pool2d_backward(dy, indices, input_shape):
    """Gradient of :func:`max_pool2d`: scatter-add of ``dy`` through ``indices``.

    Parameters
    ----------
    dy : array, shape (N, C, Ho, Wo)
    indices : integer array, shape (N, C, Ho, Wo)
        As returned by :func:`max_pool2d`; every entry must lie in ``[0, H*W)``.
    input_shape : (N, C, H, W)

    Returns
    -------
    dx : array, shape (N, C, H, W)
        ``dx[n, c].flat[indices[n, c, i, j]] += dy[n, c, i, j]``: overlapping windows add up.
    """
    dy = v.any_float_array(dy, "dy", 4)
    N, C, H, W = v.shape_tuple(input_shape, "input_shape", 4)
    if tuple(dy.shape[:2]) != (N, C):
        raise ValueError(
            f"dy {tuple(dy.shape)} must have the batch and channels of input_shape {(N, C, H, W)}"
        )
    v.check_size((N, C, H, W), "input_shape")
    indices = _index_array(indices, dy, "dy")
    dx, bad = _k.max_pool2d_backward_checked(dy, indices, (N, C, H, W))
    _refuse(bad, H * W, f"indices (flat positions in a {H}x{W} plane of input_shape)")
    return dx


# ----------------------------------------------------------------------------------------------
# average pooling


def avg_pool2d(
    x,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    count_include_pad: bool = True,
):
    """2-D average pooling; without dilation the same as ``torch.nn.functional.avg_pool2d``.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    kernel_size, stride, padding, dilation : int or (int, int)
        ``stride`` defaults to ``kernel_size``; padding (zeros) at most ``kernel_size // 2``.
        With dilation the window takes every d-th element.
    count_include_pad : bool
        True: divide by ``kh*kw`` (the taps inside the padded input, all of them).  False: divide
        by the number of taps inside ``x``, which then must be at least one for every window.

    Returns
    -------
    y : array, shape (N, C, Ho, Wo)
    """
    x = v.any_float_array(x, "x", 4)
    cip = as_bool(count_include_pad, "count_include_pad")
    k, s, p, d, _ = _pool_geometry(
        x.shape[2:], kernel_size, stride, padding, dilation, "x", need_element=not cip
    )
    return _k.avg_pool2d(x, k, s, p, d, cip)


def avg_pool2d_backward(
    dy,
    input_shape,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    count_include_pad: bool = True,
):
    """Gradient of :func:`avg_pool2d` with the same arguments.

    dy: (N, C, Ho, Wo), the output shape of ``avg_pool2d`` on ``input_shape`` (N, C, H, W).
    Returns dx: (N, C, H, W); each output spreads ``dy / divisor`` over its window.
    """
    dy = v.any_float_array(dy, "dy", 4)
    cip = as_bool(count_include_pad, "count_include_pad")
    N, C, H, W = v.shape_tuple(input_shape, "input_shape", 4)
    k, s, p, d, (Ho, Wo) = _pool_geometry(
        (H, W), kernel_size, stride, padding, dilation, "input_shape", need_element=not cip
    )
    if tuple(dy.shape) != (N, C, Ho, Wo):
        raise ValueError(
            f"dy must have the output shape {(N, C, Ho, Wo)} of avg_pool2d on input_shape "
            f"{(N, C, H, W)}, got {tuple(dy.shape)}"
        )
    v.check_size((N, C, H, W), "input_shape")
    return _k.avg_pool2d_backward(dy, (N, C, H, W), k, s, p, d, cip)


# ----------------------------------------------------------------------------------------------
# channel max pooling (maxout) and global average pooling (NIN)


def channel_max_pool(x, pool_size: int):
    """Maxout: the max over groups of ``pool_size`` consecutive channels, with indices.

    x: (N, C, H, W) with ``C % pool_size == 0`` -> y: (N, C // pool_size, H, W) and int64 indices
    of the same shape holding the absolute input channel chosen.  Ties pick the lowest channel; a
    NaN always replaces (the rule of :func:`max_pool2d`).
    """
    x = v.any_float_array(x, "x", 4)
    k = v.positive_int(pool_size, "pool_size")
    if x.shape[1] % k != 0:
        raise ValueError(
            f"the channels of x {tuple(x.shape)} ({x.shape[1]}) must be a multiple of pool_size {k}"
        )
    return _k.channel_max_pool(x, k)


def channel_max_pool_backward(dy, indices, input_shape):
    """Gradient of :func:`channel_max_pool`.

    dy, indices: (N, C // k, H, W); input_shape: (N, C, H, W), where ``k`` = C / dy's channels.
    Each index must name a channel of its own group (``g*k <= indices[:, g] < (g+1)*k``).
    Returns dx: (N, C, H, W) with ``dy`` at the chosen channels and zeros elsewhere.
    """
    dy = v.any_float_array(dy, "dy", 4)
    N, C, H, W = v.shape_tuple(input_shape, "input_shape", 4)
    G = int(dy.shape[1])
    if (int(dy.shape[0]), int(dy.shape[2]), int(dy.shape[3])) != (N, H, W) or C % G != 0:
        raise ValueError(
            f"dy {tuple(dy.shape)} does not fit input_shape {(N, C, H, W)}: expected "
            f"(N, C // pool_size, H, W) with C a multiple of dy's channels"
        )
    v.check_size((N, C, H, W), "input_shape")
    indices = _index_array(indices, dy, "dy")
    k = C // G
    what = f"indices minus the first channel of their group (k={k})"
    _check_range(indices, k, what, groups=(H * W, G, k))
    return _k.channel_max_pool_backward(dy, indices, (N, C, H, W))


def global_avg_pool2d(x):
    """Global average pooling: x (N, C, H, W) -> y (N, C, 1, 1), the mean of each plane."""
    x = v.any_float_array(x, "x", 4)
    return _k.global_avg_pool2d(x)


def global_avg_pool2d_backward(dy, input_shape):
    """Gradient of :func:`global_avg_pool2d`: dy (N, C, 1, 1) -> dx (N, C, H, W) = dy / (H*W)."""
    dy = v.any_float_array(dy, "dy", 4)
    N, C, H, W = v.shape_tuple(input_shape, "input_shape", 4)
    if tuple(dy.shape) != (N, C, 1, 1):
        raise ValueError(
            f"dy must have shape {(N, C, 1, 1)} for input_shape {(N, C, H, W)}, "
            f"got {tuple(dy.shape)}"
        )
    v.check_size((N, C, H, W), "input_shape")
    return _k.global_avg_pool2d_backward(dy, (N, C, H, W))
