"""Argument validation for the public boundary (``cnncore.functional`` and the layers).

Every public kernel validates here once; the kernels below trust their inputs.  Errors are
``TypeError`` (wrong kind of thing: dtype, type, a GPU array where a CPU one is needed) or
``ValueError`` (wrong value: shape, size, range), and each message names the argument and shapes.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from cnncore_kernels.arrays import is_cuda_array
from cnncore_kernels.geometry import out_size

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Largest element count we accept for any array we allocate (keeps index arithmetic in int64 safe).
MAX_ELEMENTS = 2**62
# Largest magnitude of an integer argument (sizes, strides, padding ...): the kernels hold them in
# 64-bit signed ints, and sums such as ``H + 2 * padding`` must not overflow there either.
MAX_INT = 2**62


def integer(value, name: str) -> int:
    """A Python int from an int or NumPy integer (not a bool), at most ``MAX_INT`` in magnitude.

    Larger values would overflow the kernels' 64-bit indices: they are refused with a
    ``ValueError`` naming ``name`` (however large), never an ``OverflowError``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    out = int(value)
    if not -MAX_INT <= out <= MAX_INT:
        raise ValueError(f"{name} must lie in [-2**62, 2**62], got {out}")
    return out


def pair(value, name: str) -> tuple[int, int]:
    """Turn an int or an ``(h, w)`` pair of ints into a tuple of two Python ints."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, numbers.Integral):
        return integer(value, name), integer(value, name)
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, Sequence) or isinstance(value, np.ndarray):
        items = list(value) if getattr(value, "ndim", 1) == 1 else [value]
        if len(items) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
        if not all(
            isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in items
        ):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        return integer(items[0], name), integer(items[1], name)
    raise TypeError(f"{name} must be an int or a pair of ints, got {type(value).__name__}")


def positive_pair(value, name: str) -> tuple[int, int]:
    """``pair`` that also requires both entries >= 1 (kernel sizes, strides, dilations)."""
    p = pair(value, name)
    if p[0] < 1 or p[1] < 1:
        raise ValueError(f"{name} must be >= 1, got {p}")
    return p


def nonneg_pair(value, name: str) -> tuple[int, int]:
    """``pair`` that also requires both entries >= 0 (padding)."""
    p = pair(value, name)
    if p[0] < 0 or p[1] < 0:
        raise ValueError(f"{name} must be >= 0, got {p}")
    return p


def positive_int(value, name: str) -> int:
    """An int >= 1 (and at most ``MAX_INT``)."""
    out = integer(value, name)
    if out < 1:
        raise ValueError(f"{name} must be >= 1, got {out}")
    return out


def shape_tuple(value, name: str, ndim: int) -> tuple[int, ...]:
    """A shape argument such as ``input_shape``: ``ndim`` positive ints."""
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of {ndim} ints, got {value!r}") from None
    if len(items) != ndim:
        raise ValueError(f"{name} must have {ndim} entries, got {items}")
    if not all(
        isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in items
    ):
        raise TypeError(f"{name} must be a tuple of ints, got {items}")
    if any(v < 1 for v in items):
        raise ValueError(f"{name} entries must be >= 1, got {items}")
    out = tuple(integer(v, name) for v in items)
    check_size(out, name)
    return out


def _check_dims(x, name: str, ndim: int | None) -> None:
    shape = tuple(x.shape)
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {shape}")
    if any(s == 0 for s in shape):
        raise ValueError(f"{name} must not be empty, got shape {shape}")


def check_float_dtype(dtype, name: str) -> None:
    """Refuse every dtype but native float32/float64, with a ``TypeError`` naming ``name``.

    Byte-swapped floats (``'>f4'`` on a little-endian machine) are refused rather than converted:
    the kernels read native floats, and a silent conversion would hide a copy of the whole array.
    """
    dt = np.dtype(dtype)
    if dt in FLOAT_DTYPES:
        return
    if dt.kind == "f" and dt.newbyteorder("=") in FLOAT_DTYPES:
        raise TypeError(
            f"{name} has the byte-swapped dtype {dt.str}; convert it to native byte order "
            f"first (x.astype(x.dtype.newbyteorder('=')))"
        )
    raise TypeError(f"{name} must be float32 or float64, got dtype {dt}")


def float_array(x, name: str, ndim: int | None = None) -> np.ndarray:
    """A CPU float32/float64 array, C-contiguous (non-contiguous inputs are copied)."""
    if is_cuda_array(x):
        raise TypeError(f"{name} is a GPU array where a CPU (NumPy) array is required")
    if not isinstance(x, np.ndarray):
        if hasattr(x, "detach") and hasattr(x, "numpy"):  # a torch CPU tensor
            x = x.detach().numpy()
        else:
            x = np.asarray(x)
    check_float_dtype(x.dtype, name)
    _check_dims(x, name, ndim)
    # the array itself when it already is C-contiguous (read-only and memory-mapped arrays too:
    # the kernels never write to their inputs), else a C-contiguous copy; 0-d stays 0-d
    return np.asarray(x, order="C")


def device_dtype(x) -> np.dtype:
    """The NumPy dtype of a GPU array (torch CUDA tensors have no NumPy ``dtype``)."""
    iface = getattr(x, "__cuda_array_interface__", None)
    if iface is not None:
        return np.dtype(iface["typestr"])
    return np.dtype(x.dtype)


def any_float_array(x, name: str, ndim: int | None = None, *, allow_cuda: bool = True):
    """Like ``float_array`` but a GPU array is accepted (float32 only) and returned as it is."""
    if is_cuda_array(x):
        if not allow_cuda:
            raise TypeError(f"{name} is a GPU array where a CPU (NumPy) array is required")
        if device_dtype(x) != np.float32:
            raise TypeError(f"{name} on the GPU must be float32, got dtype {device_dtype(x)}")
        _check_dims(x, name, ndim)
        return x
    return float_array(x, name, ndim)


def same_device_and_dtype(ref, ref_name: str, other, other_name: str) -> None:
    """``other`` must live where ``ref`` lives and share its dtype."""
    if is_cuda_array(ref) != is_cuda_array(other):
        where = "GPU" if is_cuda_array(ref) else "CPU"
        raise TypeError(f"{other_name} must be a {where} array like {ref_name}")
    ref_dt = device_dtype(ref) if is_cuda_array(ref) else np.dtype(ref.dtype)
    other_dt = device_dtype(other) if is_cuda_array(other) else np.dtype(other.dtype)
    if ref_dt != other_dt:
        raise TypeError(
            f"{other_name} dtype {other.dtype} does not match {ref_name} dtype {ref.dtype}"
        )


def output_hw(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    input_name: str = "x",
) -> tuple[int, int]:
    """``(Ho, Wo)``; refuses a (dilated) kernel larger than the padded input."""
    out = []
    for axis in range(2):
        eff = dilation[axis] * (kernel[axis] - 1) + 1
        padded = in_hw[axis] + 2 * padding[axis]
        if eff > padded:
            raise ValueError(
                f"kernel of effective size {eff} (kernel_size {kernel}, dilation {dilation}) is "
                f"larger than the padded {input_name} ({in_hw[0]}+2*{padding[0]}, "
                f"{in_hw[1]}+2*{padding[1]}) on axis {axis}"
            )
        out.append(out_size(in_hw[axis], kernel[axis], stride[axis], padding[axis], dilation[axis]))
    return out[0], out[1]


def check_size(shape: tuple[int, ...], name: str) -> None:
    """Refuse arrays whose element count would overflow 64-bit index arithmetic."""
    n = 1
    for s in shape:
        n *= int(s)
    if n > MAX_ELEMENTS:
        raise ValueError(f"{name} of shape {shape} is too large ({n} elements)")


def expect_shape(x, name: str, shape: tuple[int, ...]) -> None:
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
