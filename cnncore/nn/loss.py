"""Losses: ``CrossEntropyLoss`` (with the error mask of masked backward propagation) and the
pairwise ``RankingHingeLoss`` (Chatfield et al. 2014, fine-tuning for ranking)."""

from __future__ import annotations

import numbers

import numpy as np

from cnncore import _validate as v
from cnncore import device as _device
from cnncore import functional as F
from cnncore.nn.module import Module, grad_enabled


class _Loss(Module):
    """A loss: ``forward(scores, targets) -> float``, ``backward(scale=1.0) -> dscores``."""

    _grad = None  # the gradient of the last call (an array)

    def __call__(self, scores, targets) -> float:  # type: ignore[override]
        return self.forward(scores, targets)

    def backward(self, scale: float = 1.0):  # type: ignore[override]
        """Gradient of ``scale * loss`` with respect to the scores of the last forward."""
        if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
            raise TypeError(
                f"{type(self).__name__}.backward: scale must be a number, got {scale!r}"
            )
        if self._grad is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward needs a forward pass with gradients enabled first"
            )
        if scale == 1.0:
            return self._grad
        return _device.scale(scale, self._grad)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy over the class axis 1, averaged over the counted targets, as
    ``torch.nn.CrossEntropyLoss(ignore_index=...)``.

    logits (N, K) with integer targets (N,), or logits (N, K, H, W) with targets (N, H, W) (every
    pixel a sample).  Targets equal to ``ignore_index`` are left out of the mean and get zero
    gradient: the error mask of masked backward propagation.  If no target counts, the loss is NaN
    (as torch) and the gradient zero.  Caches only the gradient of the logits.
    """

    def __init__(self, ignore_index: int = -100) -> None:
        if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(
            ignore_index, numbers.Integral
        ):
            raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
        if not -(2**63) <= int(ignore_index) < 2**63:  # the rule of functional.cross_entropy
            raise ValueError(f"ignore_index must fit in int64, got {ignore_index}")
        self.ignore_index = int(ignore_index)

    def forward(self, logits, targets) -> float:  # type: ignore[override]
        loss, dlogits = F.cross_entropy(logits, targets, self.ignore_index)
        self._grad = dlogits if grad_enabled() else None
        return float(loss)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"


class RankingHingeLoss(_Loss):
    """Pairwise ranking hinge loss for multi-label scores (Chatfield et al. 2014, "TUNE-RNK").

    For image i with positive classes P_i and negative classes N_i::

        L_i = 1 / (|P_i| |N_i|) * sum_{p in P_i, n in N_i} max(0, margin - s_ip + s_in)

    and the loss is the mean of L_i over the images that have at least one positive and one
    negative class (others are left out; the loss is 0 if none is left).  Every positive is pushed
    above every negative by ``margin``, which is what average precision rewards.

    scores: (N, K) float.  targets: (N, K) labels, positive where > 0 (1/0 or +1/-1), or (N,)
    integer class indices (one positive each).  Caches only the gradient of the scores.
    """

    def __init__(self, margin: float = 1.0) -> None:
        if isinstance(margin, (bool, np.bool_)) or not isinstance(margin, numbers.Real):
            raise TypeError(f"margin must be a number, got {margin!r}")
        if not 0 <= margin < float("inf"):
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        self.margin = float(margin)

    def forward(self, scores, targets) -> float:  # type: ignore[override]
        s = v.float_array(scores, "scores", 2)
        n, k = s.shape
        t = np.asarray(targets)
        if t.shape == (n,) and np.issubdtype(t.dtype, np.integer):
            if np.any((t < 0) | (t >= k)):
                raise ValueError(f"targets must be class indices in [0, {k}), got {t}")
            pos = np.zeros((n, k), dtype=bool)
            pos[np.arange(n), t] = True
        elif t.shape == (n, k) and (np.issubdtype(t.dtype, np.number) or t.dtype == bool):
            pos = t > 0
        else:
            raise ValueError(
                f"targets must be (N,) class indices or (N, K) labels for scores {s.shape}, "
                f"got shape {t.shape} dtype {t.dtype}"
            )
        neg = ~pos
        npos, nneg = pos.sum(axis=1), neg.sum(axis=1)
        valid = (npos > 0) & (nneg > 0)
        nvalid = int(valid.sum())
        # margins[i, p, n] = margin - s_ip + s_in over (positive p, negative n) pairs
        margins = s.dtype.type(self.margin) - s[:, :, None] + s[:, None, :]
        pairs = pos[:, :, None] & neg[:, None, :] & valid[:, None, None]
        active = pairs & (margins > 0)
        weight = np.zeros(n, dtype=s.dtype)
        if nvalid:
            weight[valid] = 1.0 / (npos[valid] * nneg[valid] * nvalid)
        loss = float(np.sum(np.where(active, margins, 0).sum(axis=(1, 2)) * weight))
        if grad_enabled():
            a = active.astype(s.dtype) * weight[:, None, None]
            self._grad = a.sum(axis=1) - a.sum(axis=2)  # + for negatives, - for positives
        else:
            self._grad = None
        return loss

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
