"""The thin engine: ``Parameter``, ``Module`` and the layers (one file per layer family);
``from_torch`` / ``to_torch`` convert to and from ``torch.nn`` (PyTorch imported only there)."""

from cnncore.nn.activation import LogSoftmax, ReLU, Softmax, Tanh
from cnncore.nn.container import Concat, Inception, Sequential
from cnncore.nn.conv import Conv2d
from cnncore.nn.dropout import Dropout
from cnncore.nn.freeze import (
    children_for_weight_layers,
    copy_layers,
    freeze_all,
    freeze_layers,
    unfreeze_all,
)
from cnncore.nn.init import manual_seed
from cnncore.nn.linear import Flatten, Linear
from cnncore.nn.loss import CrossEntropyLoss, RankingHingeLoss
from cnncore.nn.module import Module, Parameter, grad_enabled, no_grad
from cnncore.nn.normalization import LocalContrastNorm, LocalResponseNorm
from cnncore.nn.pooling import AvgPool2d, ChannelMaxPool, GlobalAvgPool2d, MaxPool2d
from cnncore.nn.torch_interop import from_torch, to_torch

__all__ = [
    "AvgPool2d",
    "ChannelMaxPool",
    "Concat",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2d",
    "Inception",
    "Linear",
    "LocalContrastNorm",
    "LocalResponseNorm",
    "LogSoftmax",
    "MaxPool2d",
    "Module",
    "Parameter",
    "RankingHingeLoss",
    "ReLU",
    "Sequential",
    "Softmax",
    "Tanh",
    "children_for_weight_layers",
    "copy_layers",
    "freeze_all",
    "freeze_layers",
    "from_torch",
    "grad_enabled",
    "manual_seed",
    "no_grad",
    "to_torch",
    "unfreeze_all",
]
