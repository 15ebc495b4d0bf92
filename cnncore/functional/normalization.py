"""Public, validated normalization: local response normalization (LRN, across channels, as torch)
and local contrast normalization (LCN, docs/contract/arrays.rst), forward and exact backward."""

from __future__ import annotations

import math
import numbers

from cnncore import _validate as v
from cnncore_kernels import normalization as _k

_DIVISORS = ("mean", "fixed")


def _real(value, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    """A finite real number (Python float), optionally > 0 or >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    if positive and not out > 0:
        raise ValueError(f"{name} must be > 0, got {out}")
    if nonneg and not out >= 0:
        raise ValueError(f"{name} must be >= 0, got {out}")
    return out


def _image(x, name: str = "x"):
    x = v.any_float_array(x, name, 4)
    v.check_size(tuple(x.shape), name)
    return x


def _grad_pair(dy, x) -> tuple:
    x = _image(x)
    dy = v.any_float_array(dy, "dy", 4)
    v.same_device_and_dtype(x, "x", dy, "dy")
    if tuple(dy.shape) != tuple(x.shape):
        raise ValueError(f"dy must have the shape of x {tuple(x.shape)}, got {tuple(dy.shape)}")
    return dy, x


def lrn_params(size, alpha, beta, k) -> tuple[int, float, float, float]:
    """Validated LRN hyper-parameters (``LocalResponseNorm`` checks them at construction)."""
    return (
        v.positive_int(size, "size"),
        _real(alpha, "alpha", nonneg=True),
        _real(beta, "beta"),
        _real(k, "k", positive=True),
    )


def lcn_params(size, sigma, threshold, divisor) -> tuple[int, float, float, str]:
    """Validated LCN hyper-parameters (``LocalContrastNorm`` checks them at construction)."""
    if not isinstance(divisor, str):
        raise TypeError(f"divisor must be 'mean' or 'fixed', got {divisor!r}")
    if divisor not in _DIVISORS:
        raise ValueError(f"divisor must be 'mean' or 'fixed', got {divisor!r}")
    return (
        v.positive_int(size, "size"),
        _real(sigma, "sigma", positive=True),
        _real(threshold, "threshold", positive=True),
        divisor,
    )


def local_response_norm(x, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    """Local response normalization across channels, as ``torch.nn.functional.local_response_norm``.

    ``y[n, c] = x[n, c] / (k + alpha / size * sum(x[n, j] ** 2)) ** beta`` where ``j`` runs over
    ``[c - size//2, c + (size-1)//2]`` (channels outside ``[0, C)`` count as zeros; the sum is
    always divided by ``size``).

    Parameters
    ----------
    x : array, shape (N, C, H, W)
        float32 or float64 on the CPU; float32 GPU arrays select the CUDA kernels.
    size : int >= 1
    alpha : float >= 0;  beta : float;  k : float > 0
        (``k > 0`` and ``alpha >= 0`` keep the base of the power positive.)

    Returns
    -------
    y : array, shape (N, C, H, W), dtype of x
    """
    x = _image(x)
    return _k.local_response_norm(x, *lrn_params(size, alpha, beta, k))


def local_response_norm_backward(
    dy, x, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
):
    """Gradient of ``local_response_norm`` with respect to x.

    dy, x : (N, C, H, W) of one dtype and device  ->  dx : (N, C, H, W).
    """
    dy, x = _grad_pair(dy, x)
    return _k.local_response_norm_backward(dy, x, *lrn_params(size, alpha, beta, k))


def local_contrast_norm(
    x, size: int = 9, sigma: float = 2.0, threshold: float = 1e-4, divisor: str = "mean"
):
    """Local contrast normalization (Jarrett et al. 2009), as docs/contract/arrays.rst defines it.

    The window is the ``size x size`` Gaussian
    ``g[i, j] = exp(-((i-m)**2 + (j-m)**2) / (2 sigma**2))`` with
    ``m = (size-1)/2``, spread over all C channels (each gets ``g / (C * sum(g))``).
    ``E[z]`` is the same-size, zero-padded (``(size-1)//2`` before, ``size//2`` after) filter of
    ``z`` with that window summed over channels, divided by ``E[1]`` (border correction).

    ``v = x - E[x]``, ``s = sqrt(E[v*v])``; ``divisor="mean"``: ``den = max(s, c, threshold)``
    with ``c`` the mean of ``s`` over (H, W) per image; ``divisor="fixed"``: ``den = s`` where
    ``s > threshold`` else 1.  Returns ``y = v / den``.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
        float32 or float64 on the CPU; float32 GPU arrays select the CUDA kernels.
    size : int >= 1 (even sizes work);  sigma : float > 0;  threshold : float > 0
    divisor : "mean" or "fixed"

    Returns
    -------
    y : array, shape (N, C, H, W), dtype of x

    Notes
    -----
    The Gaussian is separable, so the cost per pixel grows with ``size`` (not ``size**2``), and
    the channel sum is taken before filtering: one filtered plane per image.
    """
    x = _image(x)
    return _k.local_contrast_norm(x, *lcn_params(size, sigma, threshold, divisor))


def local_contrast_norm_backward(
    dy,
    x,
    size: int = 9,
    sigma: float = 2.0,
    threshold: float = 1e-4,
    divisor: str = "mean",
):
    """Exact gradient of ``local_contrast_norm`` with respect to x.

    dy, x : (N, C, H, W) of one dtype and device  ->  dx : (N, C, H, W).

    Differentiates through everything, including the per-image mean ``c`` (which couples all
    pixels of an image).  Where ``max(s, c, threshold)`` ties, the branch taken is ``s`` if
    ``s > max(c, threshold)``, else ``c`` if ``c >= threshold``, else the constant threshold;
    with ``divisor="fixed"`` the branch is ``s`` where ``s > threshold``.

    Flat windows (a deliberate choice): where ``s == 0`` (``v == 0`` on the whole window, e.g. a
    constant image) nothing flows through ``sqrt``: ``ds/dq`` is taken as 0 there, which is the
    limit central differences give.  PyTorch's autograd of the same formula gives NaN at such
    pixels (``d sqrt(q)/dq`` is infinite at ``q = 0``, and ``0 * inf`` is NaN even where the
    ``max`` chose another branch); away from flat windows the two gradients are equal.
    """
    dy, x = _grad_pair(dy, x)
    return _k.local_contrast_norm_backward(dy, x, *lcn_params(size, sigma, threshold, divisor))
