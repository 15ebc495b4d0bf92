"""Exact dense pixelwise classification with a patch classifier (docs/contract/dense.rst).

- ``predict(model, images, patch_size, method="dsparse", tile=None)``: the scores of every pixel
  by patch scanning (``"patchwise"``), FCN shift and stitch (``"fcn"``) or the d-regularly sparse
  network (``"dsparse"``, Li, Zhao, Wang 2014), whole or in tiles with their halo.
- ``to_dense`` / ``to_fcn``: the converted networks, sharing the classifier's Parameters (train the
  d-sparse network with a masked ``CrossEntropyLoss`` to train the classifier on sampled pixels).
- ``sparse_kernel``: a kernel with ``d - 1`` zeros between its taps (the picture of dilation).
- ``analyze``: the geometry (``Plan``: strides, receptive field, halo) or the reason it is refused;
  ``block_predictor``: the computation of one block with its halo, for chunked engines.
- ``cost``: operations per pixel of each method and the theoretical speedups.
"""

from cnncore.dense.convert import Plan, Stage, analyze
from cnncore.dense.cost import cost, cost_table
from cnncore.dense.dsparse import DenseNet, sparse_kernel, to_dense
from cnncore.dense.fcn import FCNNet, to_fcn
from cnncore.dense.predict import BlockPredictor, block_predictor, predict

__all__ = [
    "BlockPredictor",
    "DenseNet",
    "FCNNet",
    "Plan",
    "Stage",
    "analyze",
    "block_predictor",
    "cost",
    "cost_table",
    "predict",
    "sparse_kernel",
    "to_dense",
    "to_fcn",
]
