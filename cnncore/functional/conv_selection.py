"""Which CPU algorithm ``conv2d(..., algorithm="auto")`` runs: the rule and the opt-in autotuner.

Algorithms (all give the same result within their error bounds; see ``cnncore_kernels.conv``):

- ``"im2col"``: any convolution.  Column matrix (C*kh*kw rows) of a block of output rows + GEMM.
- ``"shifted"``: stride 1.  One GEMM per kernel tap over a shifted view of the padded image.
- ``"batched"``: any convolution.  im2col columns over blocks of whole images (N*Ho*Wo columns),
  so that layers with small maps and big batches get large GEMMs.
- ``"winograd"``: stride 1, square 3x3 or 5x5 kernels, any padding, dilation and groups.  F(4x4,3x3)
  and F(4x4,5x5) tiles; float32 relative (Frobenius) error at most ``WINOGRAD_ERROR_BOUND`` (5e-6
  and 7e-6, measured up to 2048 channels; the GEMM algorithms: about 3e-7).  Backward: dx and
  dweight by Winograd too.

The rule of "auto": Winograd when it applies, the tile's multiplications, counting the outputs
wasted by partial tiles at the map's edges, are at most those of the direct convolution
(``winograd_saving >= 1``), and either each group has at least ``WINOGRAD_MIN_CHANNELS`` input
channels and filters, or the layer has 2 to ``cnncore_kernels.winograd.FUSED_MAX_CHANNELS``
input channels per group (Winograd's fused element-wise stage forward, its adjoint backward)
and, forward, a 5x5 kernel, or a 3x3 kernel without groups, backward, no groups; otherwise the
GEMM
kernel's own choice: batched for more than one image with small output maps (``Ho*Wo`` at most
``cnncore_kernels._conv.BATCH_MAX_P_FORWARD`` forward, ``BATCH_MAX_P_BACKWARD`` backward), else
shifted for stride 1 and >= 16 channels when the padded width wastes at most 25%, else im2col.

Why (provisional: 2026-12, shared 2-core Zen 4 under load 5-6, 5 interleaved rounds with PyTorch
on 2 threads, medians of wall time).  On the 11 stride-1 3x3/5x5 layers with >= 32 channels of the
benchmark set, "winograd" ran the forward 1.4-3.0x and the backward 1.3-3.0x faster than the better
of im2col and shifted (pixel65's fc4 (1,128,288,288)->256 5x5 dilation 8: 2.9x forward).  2x2
outputs of a 3x3 layer (saving 1.0) still ran faster: 20 ms against 29 ms per CPU for
(128,256,2,2) padding 1.  On the 3-channel first layer (64,3,32,32) 5x5 it was level with shifted
and slower than im2col forward: below 16 channels the per-point GEMMs (K, C) @ (C, tiles) are too
thin, so the GEMM kernel keeps them.  Re-checked with Winograd's fused element-wise stage for at
most 8 channels (2026-12, Zen 3, 7 interleaved rounds, forward ms, im2col against winograd):
(64,3,32,32)->64 5x5 9.1 / 9.9, 3x3 5.9 / 7.3; (8,3,224,224)->64 3x3 40 / 67 (writing the 103 MB
output tile by tile); (8,8,56,56)->64 3x3 3.3 / 4.6; (16,8,32,32)->32 5x5 3.6 / 2.2.  One win in
five, so the threshold stays for 3x3.  For 5x5 (F(4,5) saves 6.25x the multiplies, F(4,3) 4x)
the fused stage wins (later, same machine, 9 interleaved rounds, forward ms, im2col / winograd):
(32,8,28,28)->16 5.0 / 2.5; (1,8,256,256)->32 pad 4 17.9 / 7.5; (4,8,100,100)->64 10.9 / 7.7;
(128,3,32,32)->32 13.0 / 10.5; pixel65's conv1 dense, (1,3,320,320)->32 10.9 / 8.1 and
(1,3,576,576)->32 36 / 23; (8,3,224,224)->64 63 / 57; level on (64,3,32,32)->64 11.0 / 11.4 and
(64,3,65,65)->32 15.6 / 16.4; slower with one channel, (16,1,28,28)->20 0.42 / 0.62 (nothing to
sum).  Hence 5x5 with 2 to 8 channels.  After the fused stage summed its products straight into
the output transform and the filters' weights were laid out contiguously (2026-12, Zen 3, 9
interleaved rounds, forward ms, im2col / winograd, medians): 3x3 (64,3,32,32)->64 8.3 / 5.4,
(8,3,224,224)->64 41 / 34, (16,8,32,32)->32 1.75 / 1.38, (32,3,64,64)->32 5.5 / 4.6, level on
(8,8,56,56)->64 3.4 / 3.5; one channel still slower (16,1,28,28)->20 0.29 / 0.39; grouped 3x3
slower, (2,64,16,16)->64 in 8 groups 1.2 / 2.0, (8,16,56,56)->32 in 4 groups 4.2 / 4.8 (per
group a weight transform and a call); 5x5 (64,3,32,32)->64 10.8 / 6.1.  Hence also 3x3 with 2
to 8 channels, without groups.  The backward of these layers ran the input gradient as a
convolution with K inputs and C outputs by the GEMM stage (26 against im2col's 16 ms for
(64,3,32,32)->64) until it became the adjoint of the forward's tiles, dx, dweight and dbias
from one pass over dy (``winograd.conv2d_backward_fused``; 2026-12, Zen 3, 7 interleaved rounds,
ms, the GEMM kernel's choice / winograd, full backward and without dx): 5x5 (64,3,32,32)->64
28.0 / 11.1 and 14.0 / 6.3, (16,8,32,32)->32 8.8 / 3.7 and 4.5 / 2.1, (128,3,32,32)->32 23.0 /
7.5 and 12.8 / 5.0, (1,3,320,320)->32 26.7 / 8.4 and 9.8 / 3.9; 3x3 (64,3,32,32)->64 11.2 / 5.7
and 8.6 / 4.6, (8,3,224,224)->64 72 / 45 and 45 / 36, (32,3,64,64)->32 15.6 / 8.6 and 10.2 /
6.0, (8,8,56,56)->64 10.2 / 7.3 and 5.5 / 4.6; one channel, (16,1,28,28)->20 5x5 1.0 / 0.8 but
without dx 0.41 / 0.49 (a first layer's case); grouped, (2,64,16,16)->64 in 8 groups 1.1 / 2.0,
(8,16,56,56)->32 in 4 groups 6.0 / 4.1 and 2.7 / 2.5.  Hence the backward too for 2 to 8
channels, without groups.  A 1x1 output (a fully connected layer as a 3x3 convolution)
would waste 15 of 16 outputs of an F(4x4,3x3) tile: saving 0.25.

Autotuning (``set_conv_autotune(True)``, like ``torch.backends.cudnn.benchmark``): the first "auto"
call for a (shapes, stride, padding, dilation, groups, dtype, direction, threads) key times every
applicable algorithm on the call's own arrays (one warm-up, then the best of ``AUTOTUNE_REPEATS``),
caches the fastest for the process, and from then on runs it: deterministic once cached.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from cnncore import _validate as v
from cnncore_kernels import winograd as _wg

ALGORITHMS = ("auto", "im2col", "shifted", "batched", "winograd")
WINOGRAD_KERNELS = (3, 5)
WINOGRAD_MIN_CHANNELS = 16
# few channels (the fused element-wise stage forward, its adjoint backward): these kernel sizes,
# at least 2 channels; forward 3x3 only without groups, backward none with groups
WINOGRAD_FUSED_KERNELS = (3, 5)
WINOGRAD_FUSED_GROUPED_KERNELS = (5,)
WINOGRAD_FUSED_MIN_CHANNELS = 2
# Bound on the measured float32 relative Frobenius error of the tiles "winograd" runs (C up to
# 2048, standard-normal data; cnncore_kernels.winograd.ERROR_BOUND per tile): below 1e-5.
WINOGRAD_ERROR_BOUND = max(_wg.ERROR_BOUND[t] for t in _wg.DEFAULT_TILE.values())
AUTOTUNE_REPEATS = 2

_autotune = False
_cache: dict = {}
_cache_lock = threading.Lock()


def set_conv_autotune(enabled: bool) -> None:
    """Enable (or disable) measuring the candidates of ``algorithm="auto"`` once per key.  The
    cache of measured choices is kept for the process (cleared by ``clear_conv_autotune_cache``)."""
    global _autotune
    if not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(f"enabled must be a bool, got {enabled!r}")
    _autotune = bool(enabled)


def conv_autotune_enabled() -> bool:
    return _autotune


def clear_conv_autotune_cache() -> None:
    with _cache_lock:
        _cache.clear()


def check_algorithm(algorithm) -> str:
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return algorithm


def inapplicable(algorithm, weight_shape, stride, dilation=(1, 1)) -> str | None:
    """Why ``algorithm`` cannot run this convolution (a message), or None if it can."""
    kh, kw = int(weight_shape[2]), int(weight_shape[3])
    if algorithm in ("shifted", "winograd") and tuple(stride) != (1, 1):
        return f"algorithm={algorithm!r} needs stride 1, got stride {tuple(stride)}"
    if algorithm == "winograd" and (kh != kw or kh not in WINOGRAD_KERNELS):
        return (
            f"algorithm='winograd' needs a square 3x3 or 5x5 kernel, got weight shape "
            f"{tuple(weight_shape)}"
        )
    return None


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _key(x_shape, weight_shape, stride, padding, dilation, groups, dtype, backward):
    return (
        tuple(int(s) for s in x_shape),
        tuple(int(s) for s in weight_shape),
        tuple(stride),
        tuple(padding),
        tuple(dilation),
        int(groups),
        np.dtype(dtype).str,
        bool(backward),
        _threads(),
    )


def winograd_saving(out_hw, r, dilation) -> float:
    """Direct multiplications / Winograd multiplications of the tile "winograd" runs for an r x r
    kernel, counting the outputs computed and dropped by partial tiles (all sub-grids)."""
    m, _, _ = _wg.TILES[_wg.DEFAULT_TILE[r]]
    alpha = m + r - 1
    computed = [m * len(_wg.tile_origins(n, m, d)) for n, d in zip(out_hw, dilation, strict=True)]
    return (m * m * r * r) / (alpha * alpha) * out_hw[0] * out_hw[1] / (computed[0] * computed[1])


def rule(x_shape, weight_shape, stride, padding, dilation, groups, backward=False) -> str:
    """The documented rule (see the module docstring); arguments already normalised to pairs."""
    from cnncore_kernels.conv import gemm_choice

    C, K = int(x_shape[1]) // groups, int(weight_shape[0]) // groups
    kernel = (int(weight_shape[2]), int(weight_shape[3]))
    out_hw = v.output_hw(x_shape[2:], kernel, stride, padding, dilation)
    if groups == 1:
        fused_kernels = WINOGRAD_FUSED_KERNELS
    else:
        fused_kernels = () if backward else WINOGRAD_FUSED_GROUPED_KERNELS
    few_channels = (
        kernel[0] in fused_kernels and WINOGRAD_FUSED_MIN_CHANNELS <= C <= _wg.FUSED_MAX_CHANNELS
    )
    if (
        inapplicable("winograd", weight_shape, stride) is None
        and (min(C, K) >= WINOGRAD_MIN_CHANNELS or few_channels)
        and winograd_saving(out_hw, kernel[0], dilation) >= 1
    ):
        return "winograd"
    N = int(x_shape[0])
    return gemm_choice(N, C, K, kernel, stride, padding, dilation, out_hw, backward)


def conv_algorithm(
    x_shape,
    weight_shape,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    dtype=np.float32,
    backward=False,
) -> str:
    """The CPU algorithm ``algorithm="auto"`` runs for this convolution: "im2col", "shifted" or
    "winograd".  With autotuning enabled, the cached measured choice for this key if there is one
    (before the first measurement: the rule).  GPU arrays always run the CUDA kernels."""
    x_shape = v.shape_tuple(x_shape, "x_shape", 4)
    weight_shape = v.shape_tuple(weight_shape, "weight_shape", 4)
    stride = v.positive_pair(stride, "stride")
    padding = v.nonneg_pair(padding, "padding")
    dilation = v.positive_pair(dilation, "dilation")
    groups = v.positive_int(groups, "groups")
    if x_shape[1] != weight_shape[1] * groups or weight_shape[0] % groups:
        raise ValueError(
            f"x_shape {x_shape} and weight_shape {weight_shape} do not match groups={groups} "
            "(x channels = weight channels * groups, filters divisible by groups)"
        )
    v.output_hw(x_shape[2:], weight_shape[2:], stride, padding, dilation, "x_shape")
    try:
        if dtype is None:
            raise TypeError
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64) or not dtype.isnative:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    if not isinstance(backward, (bool, np.bool_)):
        raise TypeError(f"backward must be a bool, got {backward!r}")
    if _autotune:
        key = _key(x_shape, weight_shape, stride, padding, dilation, groups, dtype, backward)
        with _cache_lock:
            if key in _cache:
                return _cache[key]
    return rule(x_shape, weight_shape, stride, padding, dilation, groups, bool(backward))


def resolve(algorithm, x, weight, stride, padding, dilation, groups, backward, run) -> str:
    """The concrete algorithm of a validated call.  ``run(name)`` executes the call with a named
    algorithm (used by the autotuner to time the candidates on the call's own arrays)."""
    if algorithm != "auto":
        why = inapplicable(algorithm, weight.shape, stride)
        if why is not None:
            raise ValueError(f"{why} (x shape {tuple(x.shape)})")
        return algorithm
    if not _autotune:
        return rule(x.shape, weight.shape, stride, padding, dilation, groups, backward)
    key = _key(x.shape, weight.shape, stride, padding, dilation, groups, x.dtype, backward)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    candidates = [a for a in ALGORITHMS[1:] if inapplicable(a, weight.shape, stride) is None]
    best = {}
    for name in candidates:
        run(name)  # warm-up (allocations, caches)
    for _ in range(AUTOTUNE_REPEATS):
        for name in candidates:  # interleaved rounds
            t0 = time.perf_counter()
            run(name)
            t = time.perf_counter() - t0
            best[name] = min(t, best.get(name, t))
    choice = min(candidates, key=lambda a: best[a])
    with _cache_lock:
        choice = _cache.setdefault(key, choice)
    return choice
