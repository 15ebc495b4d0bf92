"""Public, validated fully connected layer: ``linear`` and ``linear_backward`` (as torch's)."""

from __future__ import annotations

from cnncore import _validate as v
from cnncore_kernels import linear as _k

# BLAS takes 32-bit ints: every matrix dimension must stay below this.
_BLAS_MAX = 2**31 - 1


def _operands(x, weight, x_name: str = "x") -> tuple:
    x = v.any_float_array(x, x_name, 2)
    weight = v.any_float_array(weight, "weight", 2)
    v.same_device_and_dtype(x, x_name, weight, "weight")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"{x_name} has {x.shape[1]} features but weight expects {weight.shape[1]}: "
            f"{x_name} shape {tuple(x.shape)}, weight shape {tuple(weight.shape)} (out, in)"
        )
    if max(x.shape[0], *weight.shape) > _BLAS_MAX:
        raise ValueError(
            f"{x_name} {tuple(x.shape)} or weight {tuple(weight.shape)} has a dimension of 2**31 "
            "or more (beyond BLAS)"
        )
    v.check_size((x.shape[0], weight.shape[0]), "output")
    return x, weight


def linear(x, weight, bias=None):
    """Fully connected layer, as ``torch.nn.functional.linear``: ``y = x @ weight.T + bias``.

    Parameters
    ----------
    x : array, shape (N, in)
    weight : array, shape (out, in)
    bias : array, shape (out,), optional

    Returns
    -------
    y : array, shape (N, out), dtype of x
    """
    x, weight = _operands(x, weight)
    if bias is not None:
        bias = v.any_float_array(bias, "bias", 1)
        v.same_device_and_dtype(x, "x", bias, "bias")
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(
                f"bias must have shape ({weight.shape[0]},) to match weight "
                f"{tuple(weight.shape)}, got {tuple(bias.shape)}"
            )
    return _k.linear(x, weight, bias)


def linear_backward(
    dy,
    x,
    weight,
    need_dx: bool = True,
    need_dweight: bool = True,
    need_dbias: bool = True,
):
    """Gradients of ``linear``: ``dx = dy @ weight``, ``dweight = dy.T @ x``, ``dbias = dy.sum(0)``.

    Parameters
    ----------
    dy : array, shape (N, out)
    x : array, shape (N, in)
    weight : array, shape (out, in)
    need_dx, need_dweight, need_dbias : bool
        Skip the gradients not needed (they come back as None).

    Returns
    -------
    dx : (N, in), dweight : (out, in), dbias : (out,)
    """
    x, weight = _operands(x, weight)
    dy = v.any_float_array(dy, "dy", 2)
    v.same_device_and_dtype(x, "x", dy, "dy")
    out_shape = (x.shape[0], weight.shape[0])
    if tuple(dy.shape) != out_shape:
        raise ValueError(
            f"dy must have the output shape {out_shape} of linear(x {tuple(x.shape)}, weight "
            f"{tuple(weight.shape)}), got {tuple(dy.shape)}"
        )
    return _k.linear_backward(dy, x, weight, bool(need_dx), bool(need_dweight), bool(need_dbias))
