"""The lecture's architectures and the benchmark patch networks, as ``Sequential`` models whose
top-level children are the layers in order, named as in the papers (``conv1``, ``relu1``,
``pool1``, ``norm1``, ..., ``fc6``, ``relu6``, ``drop6``, ``fc7``, ``fc8``).

Each model carries ``input_shape`` (C, H, W), the input size of its paper, so ``summary(model)``
prints the paper's table; patch classifiers also carry ``patch_size``.
"""

from cnncore.models.imagenet import (
    GOOGLENET_INCEPTION,
    VGG_CONFIGS,
    alexnet,
    clarifai,
    cnn_f,
    cnn_m,
    cnn_s,
    googlenet,
    nin,
    overfeat,
    vgg,
)
from cnncore.models.patch import PIXEL_NET_KERNELS, pixel65, pixel_net, toy15

__all__ = [
    "GOOGLENET_INCEPTION",
    "PIXEL_NET_KERNELS",
    "VGG_CONFIGS",
    "alexnet",
    "clarifai",
    "cnn_f",
    "cnn_m",
    "cnn_s",
    "googlenet",
    "nin",
    "overfeat",
    "pixel65",
    "pixel_net",
    "toy15",
    "vgg",
]
