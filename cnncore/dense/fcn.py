"""The fully convolutional network (strides kept, Linear layers as convolutions), ``to_fcn`` and
shift-and-stitch.

A Linear after a ``C x M x M`` map becomes ``M x M`` kernels, a later Linear ``1 x 1`` kernels;
strides stay, so one pass gives the scores of the pixels on the grid of the total stride ``S``.
Shift and stitch runs ``S_h * S_w`` passes, each on the block shifted by ``(a, b)``, and interleaves
them (``scores[..., a::S_h, b::S_w]``), so every pixel is covered.
"""

from __future__ import annotations

import numpy as np

from cnncore import _validate as v
from cnncore.dense.convert import Plan, analyze
from cnncore.dense.dsparse import check_images
from cnncore.dense.layers import build_layers
from cnncore.dense.tiling import block_ranges, window, window_adjoint
from cnncore.nn import Sequential
from cnncore.nn.module import Module, grad_enabled
from cnncore_kernels import window as _kw
from cnncore_kernels.arrays import empty


class FCNNet(Sequential):
    """The FCN of a patch classifier; children are named as its layers, Parameters shared.

    ``forward(images (N, C, H, W)) -> (N, K, ceil(H/S_h), ceil(W/S_w))``: the scores of the
    pixels ``(u*S_h, v*S_w)`` under the pixel convention.  ``backward`` returns the gradient for
    the images.
    """

    def __init__(self, plan: Plan) -> None:
        super().__init__(build_layers(plan, dense=False))
        self.plan = plan
        self._geometry: tuple | None = None

    def forward_valid(self, block):
        """One pass: block rows ``[0, L)`` give the scores of block rows ``0, S, 2S, ...`` (those
        whose receptive field fits: ``floor((L - R) / S) + 1`` of them)."""
        return Sequential.forward(self, block)

    def forward(self, images):
        x = check_images(images, self.plan, model=self)
        hw = (int(x.shape[2]), int(x.shape[3]))
        # the block of the whole image has H + R - 1 rows: exactly ceil(H / S) grid outputs
        rows, cols = block_ranges(hw, self.plan.halo("fcn"))
        y = self.forward_valid(window(x, rows, cols))
        self._geometry = (tuple(y.shape), hw, rows, cols) if grad_enabled() else None
        return y

    def backward(self, dy):
        if self._geometry is None:
            raise RuntimeError("FCNNet.backward needs a forward pass with gradients enabled first")
        shape, hw, rows, cols = self._geometry
        dy = v.any_float_array(dy, "dy", 4)
        if tuple(dy.shape) != shape:
            raise ValueError(f"dy must have the scores' shape {shape}, got {tuple(dy.shape)}")
        dblock = Sequential.backward(self, dy)
        self._geometry = None
        return window_adjoint(dblock, hw, rows, cols)

    def shift_and_stitch(self, block: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """Scores ``(N, K, h, w)`` of every pixel of a block ``(N, C, h + R_h - 1, w + R_w - 1)``
        (the halo of ``Plan.halo("fcn")``), from ``S_h * S_w`` shifted passes."""
        Sh, Sw = self.plan.stride
        h, w = hw
        shape = (int(block.shape[0]), self.plan.num_classes, h, w)
        out = empty(block, shape)
        for a in range(min(Sh, h)):
            for b in range(min(Sw, w)):
                # pass (a, b) sees the block from row a, column b: its grid is a::Sh, b::Sw
                y = self.forward_valid(block[:, :, a:, b:])
                want = (shape[0], shape[1], -(-(h - a) // Sh), -(-(w - b) // Sw))
                if tuple(int(s) for s in y.shape) != want:
                    raise ValueError(f"pass ({a}, {b}) gave shape {tuple(y.shape)}, not {want}")
                _kw.paste(out, y, a, b, (Sh, Sw))
        return out

    def extra_repr(self) -> str:
        P, R, S = self.plan.patch, self.plan.receptive_field, self.plan.stride
        return f"patch={P}, receptive_field={R}, total_stride={S}"


def to_fcn(model: Module, patch_size: int | tuple[int, int] | None = None) -> FCNNet:
    """The FCN of the patch classifier ``model`` for ``patch_size`` patches (Parameters shared;
    ``patch_size`` defaults to ``model.patch_size``, ``ValueError`` when neither is given).

    Raises ``ValueError`` naming the layer if ``model`` cannot be converted exactly.
    """
    return FCNNet(analyze(model, patch_size))
