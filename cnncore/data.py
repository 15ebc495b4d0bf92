"""Data augmentation and test-time averaging (AlexNet, OverFeat, VGG, Chatfield et al.).

Training: mean-image subtraction, random crops (optionally from a zero-padded image), horizontal
flips and scale jittering (rescale so the shorter side is a random S in [S_min, S_max], then crop),
combined by ``Augmentation``.  Test time: class posteriors averaged over the 10 crops (4 corners and
the centre, and their mirror images), over several scales, and over several models.

Images are NCHW NumPy arrays (float32 or float64); every random choice comes from the
``np.random.Generator`` passed in, so a seeded generator makes augmentation repeatable.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from cnncore import _validate as v
from cnncore import functional as F
from cnncore.nn.module import Module, no_grad

__all__ = [
    "Augmentation",
    "average_models",
    "batches",
    "center_crop",
    "mean_image",
    "predict_multiscale",
    "predict_proba",
    "predict_ten_crop",
    "random_crop",
    "random_flip",
    "resize",
    "rescale_shorter_side",
    "scale_jitter",
    "subtract_mean",
    "ten_crop",
]


def _images(x, name: str = "images") -> np.ndarray:
    return v.float_array(x, name, 4)


def _size(value, name: str) -> tuple[int, int]:
    return v.positive_pair(value, name)


# -- mean subtraction -------------------------------------------------------------------------
def mean_image(images) -> np.ndarray:
    """The mean image (C, H, W) of a training set (N, C, H, W), accumulated in float64."""
    x = _images(images)
    return x.mean(axis=0, dtype=np.float64).astype(x.dtype)


def subtract_mean(images, mean) -> np.ndarray:
    """``images - mean``; ``mean`` is a mean image (C, H, W) or per-channel means (C,)."""
    x = _images(images)
    m = np.asarray(mean, dtype=x.dtype)
    C = x.shape[1]
    if m.shape == (C,):
        m = m.reshape(C, 1, 1)
    if m.shape != (C, 1, 1) and m.shape != x.shape[1:]:
        raise ValueError(
            f"mean must have shape {x.shape[1:]} (a mean image) or ({C},), got {m.shape}"
        )
    return x - m


# -- geometry ---------------------------------------------------------------------------------
def _interp_matrix(n_in: int, n_out: int, dtype: np.dtype) -> np.ndarray:
    """(n_out, n_in) linear interpolation weights, half-pixel centres (torch's bilinear,
    align_corners=False, no antialiasing)."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    m = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1.0 - lam)
    np.add.at(m, (rows, i1), lam)
    return m.astype(dtype)


def resize(images, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (N, C, H, W) to (N, C, h, w), as ``torch.nn.functional.interpolate(
    mode="bilinear", align_corners=False)``.  ``size``: int or (h, w)."""
    x = _images(images)
    h, w = _size(size, "size")
    if (h, w) == x.shape[2:]:
        return x.copy()
    rh = _interp_matrix(x.shape[2], h, x.dtype)
    rw = _interp_matrix(x.shape[3], w, x.dtype)
    return np.ascontiguousarray(np.matmul(np.matmul(rh, x), rw.T))


def rescale_shorter_side(images, s: int) -> np.ndarray:
    """Resize so that the shorter side is ``s``, keeping the aspect ratio (VGG's training scale)."""
    x = _images(images)
    s = v.positive_int(s, "s")
    H, W = x.shape[2:]
    if H <= W:
        return resize(x, (s, max(1, round(W * s / H))))
    return resize(x, (max(1, round(H * s / W)), s))


def _check_crop(shape: tuple[int, ...], size: tuple[int, int], name: str = "images") -> None:
    if size[0] > shape[2] or size[1] > shape[3]:
        raise ValueError(f"crop size {size} is larger than the {name} {shape[2:]} (shape {shape})")


def center_crop(images, size: int | tuple[int, int]) -> np.ndarray:
    """The centre (h, w) crop of every image."""
    x = _images(images)
    h, w = _size(size, "size")
    _check_crop(x.shape, (h, w))
    top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return np.ascontiguousarray(x[:, :, top : top + h, left : left + w])


def random_crop(
    images,
    size: int | tuple[int, int],
    rng: np.random.Generator,
    padding: int | tuple[int, int] = 0,
) -> np.ndarray:
    """A random (h, w) crop of each image (offsets drawn independently per image), taken from the
    image zero padded by ``padding`` on each side."""
    x = _images(images)
    h, w = _size(size, "size")
    ph, pw = v.nonneg_pair(padding, "padding")
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    _check_crop(x.shape, (h, w), "padded images")
    N = x.shape[0]
    tops = rng.integers(0, x.shape[2] - h + 1, size=N)
    lefts = rng.integers(0, x.shape[3] - w + 1, size=N)
    out = np.empty((N, x.shape[1], h, w), dtype=x.dtype)
    for i in range(N):
        out[i] = x[i, :, tops[i] : tops[i] + h, lefts[i] : lefts[i] + w]
    return out


def random_flip(images, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right with probability ``p``."""
    x = _images(images)
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    flip = rng.random(x.shape[0]) < p
    out = x.copy()
    out[flip] = x[flip, :, :, ::-1]
    return out


def _scale_range(scale_range: tuple[int, int]) -> tuple[int, int]:
    try:
        lo, hi = (int(s) for s in scale_range)
    except (TypeError, ValueError):
        raise TypeError(
            f"scale_range must be a pair of ints (S_min, S_max), got {scale_range!r}"
        ) from None
    if not 1 <= lo <= hi:
        raise ValueError(f"scale_range must satisfy 1 <= S_min <= S_max, got {scale_range!r}")
    return lo, hi


def scale_jitter(
    images, crop_size: int | tuple[int, int], scale_range: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Scale jittering (VGG): for each image draw an integer S in [S_min, S_max], rescale so the
    shorter side is S, and take a random ``crop_size`` crop.  S_min must be at least the crop."""
    x = _images(images)
    h, w = _size(crop_size, "crop_size")
    lo, hi = _scale_range(scale_range)
    if lo < max(h, w):
        raise ValueError(f"S_min {lo} of scale_range is smaller than the crop {(h, w)}")
    scales = rng.integers(lo, hi + 1, size=x.shape[0])
    out = np.empty((x.shape[0], x.shape[1], h, w), dtype=x.dtype)
    for i, s in enumerate(scales):
        out[i] = random_crop(rescale_shorter_side(x[i : i + 1], int(s)), (h, w), rng)[0]
    return out


class Augmentation:
    """Training-time augmentation as one callable ``aug(images, rng) -> images``.

    In order: subtract ``mean`` (a mean image or per-channel means of the full-size images), then
    either scale jittering (``scale_range`` with ``crop_size``) or a random ``crop_size`` crop from
    the image zero padded by ``padding``, then random horizontal flips (``flip``).
    """

    def __init__(
        self,
        crop_size: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        flip: bool = False,
        scale_range: tuple[int, int] | None = None,
        mean=None,
    ) -> None:
        self.crop_size = None if crop_size is None else _size(crop_size, "crop_size")
        self.padding = v.nonneg_pair(padding, "padding")
        self.flip = bool(flip)
        self.scale_range = None if scale_range is None else _scale_range(scale_range)
        if self.scale_range is not None and self.crop_size is None:
            raise ValueError("scale_range needs a crop_size")
        self.mean = None if mean is None else np.asarray(mean)

    def __call__(self, images, rng: np.random.Generator) -> np.ndarray:
        x = _images(images)
        if self.mean is not None:
            x = subtract_mean(x, self.mean)
        if self.scale_range is not None:
            x = scale_jitter(x, self.crop_size, self.scale_range, rng)
        elif self.crop_size is not None:
            x = random_crop(x, self.crop_size, rng, self.padding)
        if self.flip:
            x = random_flip(x, rng)
        return x

    def test_view(self, images) -> np.ndarray:
        """The deterministic counterpart for test images: mean subtracted, then the centre crop
        (of the image rescaled to S_min with scale jittering; of the padded image where the crop
        is larger than the image)."""
        x = _images(images)
        if self.mean is not None:
            x = subtract_mean(x, self.mean)
        if self.crop_size is None:
            return x
        if self.scale_range is not None:
            x = rescale_shorter_side(x, self.scale_range[0])
        else:
            ph = self.padding[0] if self.crop_size[0] > x.shape[2] else 0
            pw = self.padding[1] if self.crop_size[1] > x.shape[3] else 0
            if ph or pw:
                x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        return center_crop(x, self.crop_size)


def batches(
    n: int, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[np.ndarray]:
    """Index arrays of consecutive mini-batches over ``n`` samples, shuffled by ``rng`` if given
    (the last batch may be smaller)."""
    n = v.positive_int(n, "n")
    batch_size = v.positive_int(batch_size, "batch_size")
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


# -- test time --------------------------------------------------------------------------------
def ten_crop(images, size: int | tuple[int, int]) -> np.ndarray:
    """The 10 crops of every image: (10, N, C, h, w), in the order top-left, top-right,
    bottom-left, bottom-right, centre, then the same five of the mirrored image (torchvision's
    ``TenCrop``)."""
    x = _images(images)
    h, w = _size(size, "size")
    _check_crop(x.shape, (h, w))
    H, W = x.shape[2:]
    top, left = (H - h) // 2, (W - w) // 2
    offsets = [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w), (top, left)]
    crops = [x[:, :, a : a + h, b : b + w] for a, b in offsets]
    crops += [c[:, :, :, ::-1] for c in crops]
    return np.ascontiguousarray(np.stack(crops))


def _posteriors(scores) -> np.ndarray:
    """Class posteriors (N, K) from scores (N, K) or score maps (N, K, h, w) (softmax over K,
    then averaged over the map, as VGG's dense evaluation)."""
    p = np.asarray(F.softmax(scores))
    if p.ndim == 4:
        p = p.mean(axis=(2, 3))
    elif p.ndim != 2:
        raise ValueError(f"model output must be (N, K) or (N, K, h, w), got {p.shape}")
    return p


def predict_proba(model: Module, images, batch_size: int = 256) -> np.ndarray:
    """Softmax class posteriors (N, K) of ``model`` on ``images``, in eval mode without caching
    (the model's training mode is restored afterwards)."""
    x = _images(images)
    batch_size = v.positive_int(batch_size, "batch_size")
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            parts = [
                _posteriors(model(x[i : i + batch_size])) for i in range(0, len(x), batch_size)
            ]
    finally:
        model.train(was_training)
    return np.concatenate(parts)


def predict_ten_crop(
    model: Module, images, crop_size: int | tuple[int, int], batch_size: int = 256
) -> np.ndarray:
    """Posteriors (N, K) averaged over the 10 crops of each image (AlexNet's test procedure)."""
    crops = ten_crop(images, crop_size)
    return np.mean([predict_proba(model, c, batch_size) for c in crops], axis=0)


def predict_multiscale(
    model: Module,
    images,
    scales: Sequence[int],
    crop_size: int | tuple[int, int] | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Posteriors (N, K) averaged over several scales: each image is rescaled so its shorter side
    is Q for each Q in ``scales``; then either its 10 crops of ``crop_size`` are classified, or,
    with ``crop_size=None``, the whole rescaled image (a fully convolutional model; its score map
    is averaged, VGG's dense evaluation)."""
    x = _images(images)
    qs = [v.positive_int(q, "scales") for q in scales]
    if not qs:
        raise ValueError("scales must not be empty")
    out = []
    for q in qs:
        xq = rescale_shorter_side(x, q)
        if crop_size is None:
            out.append(predict_proba(model, xq, batch_size))
        else:
            out.append(predict_ten_crop(model, xq, crop_size, batch_size))
    return np.mean(out, axis=0)


def average_models(
    models: Sequence[Module],
    images,
    predict: Callable[..., np.ndarray] = predict_proba,
    **kwargs,
) -> np.ndarray:
    """Model averaging: the mean of the posteriors of several models, each computed by
    ``predict(model, images, **kwargs)`` (e.g. ``predict_ten_crop`` with ``crop_size=...``)."""
    models = list(models)
    if not models:
        raise ValueError("average_models needs at least one model")
    return np.mean([predict(m, images, **kwargs) for m in models], axis=0)
