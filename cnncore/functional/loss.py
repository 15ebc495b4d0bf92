"""Public, validated softmax cross-entropy: ``cross_entropy(logits, targets, ignore_index)``."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from cnncore import _validate as v
from cnncore.device import to_numpy
from cnncore_kernels import loss as _k
from cnncore_kernels.arrays import is_cuda_array

_INT64 = np.iinfo(np.int64)


def _host_targets(targets: Any, on_gpu: bool) -> np.ndarray:
    """A host view of ``targets`` for the checks (device targets are copied: one int per pixel)."""
    if on_gpu != is_cuda_array(targets):
        where = "GPU" if on_gpu else "CPU"
        raise TypeError(f"targets must be a {where} array like logits")
    if on_gpu:
        return to_numpy(targets)
    if not isinstance(targets, np.ndarray):
        if hasattr(targets, "detach") and hasattr(targets, "numpy"):  # a torch CPU tensor
            return targets.detach().numpy()
        return np.asarray(targets)
    return targets


def cross_entropy(logits: Any, targets: Any, ignore_index: int = -100) -> tuple[float, Any]:
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
        targets are copied to the host once for the range check).
    ignore_index : int

    Returns
    -------
    loss : float
        ``nan`` when no target counts (as torch).
    dlogits : array, shape and dtype of logits
        Gradient of ``loss``: ``(softmax(logits) - onehot(targets)) / count`` on counted
        positions, 0 on ignored ones (all zeros when no target counts).
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
    on_gpu = is_cuda_array(logits)
    host = _host_targets(targets, on_gpu)
    N, K = int(logits.shape[0]), int(logits.shape[1])
    expected = (N, *(int(s) for s in logits.shape[2:]))
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
    bad = (t64 != ignore_index) & ((t64 < 0) | (t64 >= K))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"targets must be in [0, {K}) or equal ignore_index={ignore_index}, "
            f"got {int(t64[where])} at index {where} (targets shape {tuple(host.shape)})"
        )
    if on_gpu:
        if host.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
            raise TypeError(f"targets on the GPU must be int32 or int64, got dtype {host.dtype}")
        return _k.cross_entropy(logits, targets, ignore_index)
    return _k.cross_entropy(logits, t64, ignore_index)
