"""Public, validated softmax cross-entropy: ``cross_entropy(logits, targets, ignore_index)``."""

from __future__ import annotations

import numbers

import numpy as np

from cnncore import _validate as v
from cnncore._validate import device_dtype
from cnncore_kernels import checks as _kc
from cnncore_kernels import loss as _k
from cnncore_kernels.arrays import is_cuda_array

_INT64 = np.iinfo(np.int64)


def _host_targets(targets) -> np.ndarray:
    """A host array of CPU ``targets`` (NumPy, torch CPU tensor or sequence)."""
    if not isinstance(targets, np.ndarray):
        if hasattr(targets, "detach") and hasattr(targets, "numpy"):  # a torch CPU tensor
            return targets.detach().numpy()
        return np.asarray(targets)
    return targets


def _range_error(K: int, ignore_index: int, value: int, where, shape: tuple) -> ValueError:
    return ValueError(
        f"targets must be in [0, {K}) or equal ignore_index={ignore_index}, got {value} at index "
        f"{where} (targets shape {shape})"
    )


def _check_device_targets(targets, expected: tuple, K: int, ignore_index: int) -> None:
    """GPU targets: dtype and shape from their metadata, range on the device (nothing copied
    but one integer)."""
    dtype = device_dtype(targets)
    if dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise TypeError(f"targets on the GPU must be int32 or int64, got dtype {dtype}")
    shape = tuple(int(s) for s in targets.shape)
    if shape != expected:
        raise ValueError(f"targets must have shape {expected} for the logits, got {shape}")
    _check_target_range(targets, K, ignore_index, shape)


def _check_target_range(targets, K: int, ignore_index: int, shape: tuple) -> None:
    """Refuse a target outside ``[0, K)`` that is not ``ignore_index``: one pass (on the device
    for GPU targets, with a single integer back), the first offender named."""
    bad = _kc.first_out_of_range(targets, K, ignore=ignore_index)
    if bad is not None:
        where = tuple(int(i) for i in np.unravel_index(bad[0], shape))
        raise _range_error(K, ignore_index, bad[1], where, shape)


def cross_entropy(logits, targets, ignore_index: int = -100):
    """Mean softmax cross-entropy over the counted targets, and its gradient.

    The loss is exactly ``torch.nn.functional.cross_entropy(logits, targets,
    ignore_index=ignore_index)`` (reduction "mean"): the mean over the targets that are not
    ``ignore_index`` of ``-log_softmax(logits, axis=1)[target]``.  Ignored pixels are the error
    mask of masked backward propagation: they add nothing to the loss and get a zero gradient.

    Parameters
    ----------
    logits : array, shape (N, K) or (N, K, H, W)
        float32 or float64 on the CPU; float32 GPU arrays select the CUDA kernels.
    targets : integer array, shape (N,) or (N, H, W) to match
        Class indices in ``[0, K)``, or ``ignore_index``.  On the same device as logits (GPU
        targets are range-checked on the device).
    ignore_index : int

    Returns
    -------
    loss : float
        ``nan`` when no target counts (as torch).
    dlogits : array, shape and dtype of logits
        Gradient of ``loss``: ``(softmax(logits) - onehot(targets)) / count`` on counted
        positions, 0 on ignored ones (all zeros when no target counts).

    Notes
    -----
    Infinite logits follow torch: a ``+inf`` logit on a counted position makes the loss and that
    position's gradient NaN, a ``-inf`` logit on a class other than the target is harmless.  One
    deliberate difference: an ignored position always gets exactly zero gradient, also when its
    logits hold ``+inf`` or NaN (torch multiplies their NaN gradient by zero and keeps the NaN).
    """
    logits = v.any_float_array(logits, "logits")
    if logits.ndim not in (2, 4):
        raise ValueError(
            f"logits must have shape (N, K) or (N, K, H, W), got {tuple(logits.shape)}"
        )
    v.check_size(tuple(logits.shape), "logits")
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
    ignore_index = int(ignore_index)
    if not _INT64.min <= ignore_index <= _INT64.max:
        raise ValueError(f"ignore_index must fit in int64, got {ignore_index}")
    # the device branch below is validation, not a kernel: host targets of any integer dtype (or a
    # torch CPU tensor) are converted, device targets are checked in place (never copied)
    on_gpu = is_cuda_array(logits)
    if on_gpu != is_cuda_array(targets):
        where = "GPU" if on_gpu else "CPU"
        raise TypeError(f"targets must be a {where} array like logits")
    N, K = int(logits.shape[0]), int(logits.shape[1])
    expected = (N, *(int(s) for s in logits.shape[2:]))
    if on_gpu:
        _check_device_targets(targets, expected, K, ignore_index)
        return _k.cross_entropy(logits, targets, ignore_index)
    host = _host_targets(targets)
    if host.dtype.kind not in "iu":
        raise TypeError(f"targets must be an integer array, got dtype {host.dtype}")
    if tuple(host.shape) != expected:
        raise ValueError(
            f"targets must have shape {expected} for logits {tuple(logits.shape)}, "
            f"got {tuple(host.shape)}"
        )
    if host.dtype.kind == "u" and host.size and int(host.max()) > _INT64.max:
        raise ValueError(
            f"targets must be in [0, {K}) or equal ignore_index={ignore_index}, "
            f"got {int(host.max())}"
        )
    t64 = np.ascontiguousarray(host, dtype=np.int64)
    _check_target_range(t64, K, ignore_index, tuple(host.shape))
    return _k.cross_entropy(logits, t64, ignore_index)
