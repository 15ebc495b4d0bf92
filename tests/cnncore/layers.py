"""One instance of every layer of ``cnncore.nn`` with a valid input: the one list that the API
fuzzing (``test_api_fuzz.py``) and the module-validation tests (``test_module_validation.py``)
both run over.  ``test_module_validation.py`` checks that it names every layer class."""

from __future__ import annotations

import numpy as np

from cnncore import nn

# Layer classes that are not layers of a network: the losses (scores and targets in, a number
# out), the base class and Inception (a Concat, which the list covers).
NOT_LISTED = {"Module", "CrossEntropyLoss", "RankingHingeLoss", "Inception"}


def every_layer(x: np.ndarray) -> dict[str, tuple[nn.Module, np.ndarray]]:
    """``{name: (layer, input)}`` for a map ``x`` of shape ``(N, 4, H, W)``; the ``Linear`` reads
    ``x[:, 0, 0]`` (``(N, W)``).  Fresh layers on every call, with seeded weights."""
    nn.manual_seed(0)
    vec = np.ascontiguousarray(x[:, 0, 0])
    return {
        "Conv2d": (nn.Conv2d(4, 6, 3), x),
        "MaxPool2d": (nn.MaxPool2d(2), x),
        "AvgPool2d": (nn.AvgPool2d(2), x),
        "ChannelMaxPool": (nn.ChannelMaxPool(2), x),
        "GlobalAvgPool2d": (nn.GlobalAvgPool2d(), x),
        "LocalResponseNorm": (nn.LocalResponseNorm(3), x),
        "LocalContrastNorm": (nn.LocalContrastNorm(3), x),
        "ReLU": (nn.ReLU(), x),
        "Tanh": (nn.Tanh(), x),
        "Softmax": (nn.Softmax(), x),
        "LogSoftmax": (nn.LogSoftmax(), x),
        "Linear": (nn.Linear(vec.shape[1], 3), vec),
        "Flatten": (nn.Flatten(), x),
        "Dropout": (nn.Dropout(0.5), x),
        "Dropout-eval": (nn.Dropout(0.5).eval(), x),
        "Sequential": (nn.Sequential(nn.Conv2d(4, 2, 3), nn.ReLU()), x),
        "Concat": (nn.Concat(nn.ReLU(), nn.Tanh()), x),
    }
