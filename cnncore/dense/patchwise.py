"""Patch scanning: every pixel's ``P x P`` patch through the classifier, in bounded batches."""

from __future__ import annotations

import numpy as np

from cnncore.dense.convert import Plan
from cnncore.nn.module import Module
from cnncore_kernels import patches as _kp
from cnncore_kernels.arrays import empty

# Bytes of activations one batch may hold (the batch size follows from the largest layer).
BATCH_BYTES = 64 * 2**20
MAX_BATCH = 1024


def default_batch_size(plan: Plan, itemsize: int) -> int:
    """The largest batch whose biggest layer (input plus output of one patch) fits in
    ``BATCH_BYTES``, between 1 and ``MAX_BATCH``."""
    C, (Ph, Pw) = plan.in_channels, plan.patch
    per_patch = C * Ph * Pw
    for st in plan.stages:
        cin, hin, win = st.in_shape
        cout, ho, wo = st.out_shape
        cin = C if cin is None else cin
        cout = cin if cout is None else cout
        per_patch = max(per_patch, cin * hin * win + cout * ho * wo)
    return int(max(1, min(MAX_BATCH, BATCH_BYTES // (per_patch * itemsize))))


def scan_patches(
    model: Module,
    block: np.ndarray,
    hw: tuple[int, int],
    plan: Plan,
    batch_size: int,
    pixels: np.ndarray | None = None,
) -> np.ndarray:
    """Scores of the pixels of a block ``(N, C, h + P_h - 1, w + P_w - 1)`` (halo
    ``Plan.halo("patchwise")``): each pixel's patch goes through ``model`` (in batches of at most
    ``batch_size`` patches).  Returns ``(N, K, h, w)``; with ``pixels`` (flat indices into
    ``N * h * w``) only those are computed and ``(len(pixels), K)`` comes back."""
    h, w = hw
    N, K = int(block.shape[0]), plan.num_classes
    need = (h + plan.patch[0] - 1, w + plan.patch[1] - 1)
    if tuple(int(s) for s in block.shape[2:]) != need:
        raise ValueError(
            f"block of shape {tuple(block.shape)} does not hold the patches of {hw} pixels: "
            f"expected (N, C, {need[0]}, {need[1]})"
        )
    total = N * h * w
    flat = None
    if pixels is not None:
        flat = np.ascontiguousarray(pixels, dtype=np.int64).reshape(-1)
        total = flat.size
        if total and (flat.min() < 0 or flat.max() >= N * h * w):
            raise ValueError(f"pixels must lie in [0, {N * h * w}), got {flat.min()}..{flat.max()}")
    block, pix = _kp.prepare(block, flat)
    # with pixels, the (P, K) result is seen as (P, K, 1, 1): pixel p of it is image p
    out = empty(block, (total, K, 1, 1) if flat is not None else (N, K, h, w))
    for start in range(0, total, batch_size):
        count = min(batch_size, total - start)
        batch = _kp.gather_patches(block, hw, plan.patch, start, count, pix)
        s = _check_scores(model(batch), count, K).reshape(count, K)
        _kp.scatter_scores(s, start, out)
    return out.reshape(total, K) if flat is not None else out


def _check_scores(s, count: int, K: int):
    if tuple(s.shape) not in ((count, K), (count, K, 1, 1)):
        raise ValueError(
            f"the classifier gave shape {tuple(s.shape)} for {count} patches; expected "
            f"({count}, {K}) or ({count}, {K}, 1, 1)"
        )
    return s
