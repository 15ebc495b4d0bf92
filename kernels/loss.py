"""Dispatcher for the softmax cross-entropy loss: the CPU (Cython ``_loss``) or GPU twin.

Twin signature (``cnncore_kernels._loss`` and ``cnncore_kernels.cuda.loss`` alike; inputs
validated by ``cnncore.functional.cross_entropy``):

``cross_entropy(logits, targets, ignore_index) -> (loss, dlogits)``
    logits: C-contiguous float (N, K) or (N, K, H, W); targets: C-contiguous int64 (N,) or
    (N, H, W) (on the GPU: an int32 or int64 device array), every entry in ``[0, K)`` or equal to
    ``ignore_index`` (a Python int).  ``loss`` is a Python float, the mean over the counted targets
    (those != ignore_index) of ``-log_softmax(logits, axis=1)[target]``; ``dlogits`` (same shape
    and dtype as logits, on the logits' device) is its gradient: ``(softmax - onehot) / count``
    on counted positions, 0 on ignored ones.  With no counted target: loss nan (as torch), dlogits
    all zeros.
"""

from __future__ import annotations

from cnncore_kernels import _loss
from cnncore_kernels.arrays import twin
from cnncore_kernels.buffers import pooled


@pooled
def cross_entropy(logits, targets, ignore_index):
    # inputs validated by cnncore.functional.cross_entropy
    return twin(logits, _loss, "loss").cross_entropy(logits, targets, ignore_index)
