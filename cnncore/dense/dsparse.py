"""The d-regularly sparse network (Li, Zhao, Wang 2014, Algorithm 1) and ``to_dense``.

Every stride becomes 1 and every window (convolution, pooling, and a Linear seen as an ``M x M``
convolution) is dilated by the product ``d`` of all earlier strides.  Applied to a block of the
image with the halo of ``Plan.halo``, one pass gives the scores of every pixel of the block, exactly
the scores the patch classifier gives each pixel's patch.
"""

from __future__ import annotations

import numpy as np

from cnncore import _validate as v
from cnncore.dense.convert import Plan, analyze
from cnncore.dense.layers import build_layers
from cnncore.dense.tiling import block_ranges, window, window_adjoint
from cnncore.device import is_cuda_array
from cnncore.nn import Sequential
from cnncore.nn.module import Module, grad_enabled


def check_images(images, plan: Plan, name: str = "images", model: Module | None = None):
    """A CPU float32/float64 or GPU float32 ``(N, C, H, W)`` array with the classifier's ``C`` (and
    the device and dtype of ``model``'s Parameters, if given)."""
    if hasattr(images, "dask") and hasattr(images, "chunks"):
        raise TypeError(
            f"{name} is a Dask array: convert it with np.asarray, or map the block function of "
            "cnncore.dense.block_predictor over its chunks"
        )
    x = v.any_float_array(images, name, 4)
    if x.shape[1] != plan.in_channels:
        raise ValueError(
            f"{name} must have {plan.in_channels} channels for this classifier, got shape "
            f"{tuple(x.shape)}"
        )
    xdt = v.device_dtype(x) if is_cuda_array(x) else np.dtype(x.dtype)
    for pname, p in model.named_parameters() if model is not None else ():
        if is_cuda_array(p.data) != is_cuda_array(x):
            where, there = ("GPU", "CPU") if is_cuda_array(x) else ("CPU", "GPU")
            raise TypeError(
                f"{name} is a {where} array but parameter {pname!r} is on the {there}: move the "
                "model with .to('cuda') / .to('cpu') or the images with cnncore.device.to_device"
            )
        if p.dtype != xdt:
            raise TypeError(
                f"{name} dtype {xdt} does not match parameter {pname!r} dtype {p.dtype} "
                "(convert the model with .double()/.float() or the images with astype)"
            )
    return x


class DenseNet(Sequential):
    """The d-sparse network of a patch classifier; children are named as its layers.

    ``forward(images (N, C, H, W)) -> scores (N, K, H, W)``: zero pads by the pixel convention
    (only the rows the receptive field reads), runs the dilated layers, and returns the score of
    every pixel.  ``backward(dscores) -> dimages`` adds the parameter gradients into the shared
    Parameters; with a masked loss they equal the summed gradients of patch-by-patch training on
    the counted pixels, and the cost does not depend on how many pixels count.
    ``backward_params(dscores)`` adds the same parameter gradients without computing the images'
    (training: the first layer skips its input gradient).
    ``forward_valid(block)`` runs the layers on a block that already holds its halo.
    """

    def __init__(self, plan: Plan) -> None:
        super().__init__(build_layers(plan, dense=True))
        self.plan = plan
        self._geometry: tuple | None = None  # (output shape, rows, cols) of the forward

    def forward_valid(self, block):
        """Scores ``(N, K, h, w)`` of a block ``(N, C, h + top + bottom, w + left + right)``."""
        return Sequential.forward(self, block)

    def forward(self, images):
        x = check_images(images, self.plan, model=self)
        hw = (int(x.shape[2]), int(x.shape[3]))
        rows, cols = block_ranges(hw, self.plan.halo("dsparse"))
        y = self.forward_valid(window(x, rows, cols))
        self._geometry = (tuple(y.shape), rows, cols) if grad_enabled() else None
        return y

    def backward(self, dy):
        dy, (shape, rows, cols) = self._checked_dy(dy)
        dblock = Sequential.backward(self, dy)
        self._geometry = None
        return window_adjoint(dblock, shape[2:], rows, cols)

    def backward_params(self, dy) -> None:
        # training: the parameter gradients only, the first layer computes no image gradient
        dy, _ = self._checked_dy(dy)
        self._chain_backward_params(dy)
        self._geometry = None

    def _checked_dy(self, dy):
        """dy checked against the forward's scores, and the forward's geometry (kept until the
        backward has run, so a refused dy can be given again)."""
        if self._geometry is None:
            raise RuntimeError(
                "DenseNet.backward needs a forward pass with gradients enabled first"
            )
        shape = self._geometry[0]
        dy = v.any_float_array(dy, "dy", 4)
        if tuple(dy.shape) != shape:
            raise ValueError(f"dy must have the scores' shape {shape}, got {tuple(dy.shape)}")
        return dy, self._geometry

    def extra_repr(self) -> str:
        P, R, S = self.plan.patch, self.plan.receptive_field, self.plan.stride
        return f"patch={P}, receptive_field={R}, total_stride={S}"


def to_dense(model: Module, patch_size: int | tuple[int, int] | None = None) -> DenseNet:
    """The d-sparse network of the patch classifier ``model`` for ``patch_size`` patches (int or
    ``(Ph, Pw)``; defaults to ``model.patch_size``, ``ValueError`` when neither is given).

    It shares ``model``'s Parameter objects (no copies).  Raises ``ValueError`` naming the layer
    if ``model`` cannot be converted exactly.
    """
    return DenseNet(analyze(model, patch_size))


def sparse_kernel(weight, d) -> np.ndarray:
    """The "converted kernel" of the lecture: ``(K, C, kh, kw) -> (K, C, dh*(kh-1)+1, dw*(kw-1)+1)``
    with ``d - 1`` zero rows and columns between the taps.

    A convolution with it equals the convolution with ``weight`` at dilation ``d``; the fast path
    never builds it (it is a check and a picture).  ``d``: int or ``(dh, dw)``.
    """
    w = v.float_array(weight, "weight", 4)
    dh, dw = v.positive_pair(d, "d")
    K, C, kh, kw = w.shape
    out = np.zeros((K, C, dh * (kh - 1) + 1, dw * (kw - 1) + 1), dtype=w.dtype)
    out[:, :, ::dh, ::dw] = w
    return out
