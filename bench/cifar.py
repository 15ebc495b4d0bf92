"""A CIFAR-sized network, the same weights in cnncore and in PyTorch: a training step and inference.

conv 5x5 3->64 pad 2, ReLU, max 3x3/2, LRN(5), conv 5x5 64->64 pad 2, ReLU, max 3x3/2, Flatten,
Linear 3136->384, ReLU, Dropout(0.5), Linear 384->192, ReLU, Linear 192->10 on (N, 3, 32, 32)
inputs; SGD with momentum 0.9 and weight decay 5e-4; softmax cross-entropy.  A training step is
zero_grad, forward, loss, backward, SGD step.  Both sides start from ``weights(seed)`` (dropout
draws its own masks on each side).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4
# (name, shape) of the weighted layers' parameters, in order
SHAPES = (
    ("conv1.weight", (64, 3, 5, 5)),
    ("conv1.bias", (64,)),
    ("conv2.weight", (64, 64, 5, 5)),
    ("conv2.bias", (64,)),
    ("fc3.weight", (384, 3136)),
    ("fc3.bias", (384,)),
    ("fc4.weight", (192, 384)),
    ("fc4.bias", (192,)),
    ("fc5.weight", (10, 192)),
    ("fc5.bias", (10,)),
)
# The two convolutions as bench.workloads' conv shapes without the batch: (C, H, W, K, k, stride,
# padding, dilation); both keep their map size (5x5, padding 2, stride 1)
CONVS = ((3, 32, 32, 64, 5, 1, 2, 1), (64, 15, 15, 64, 5, 1, 2, 1))


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Uniform fan-in initial weights (float32), by parameter name."""
    rng = np.random.default_rng(seed)
    shapes = dict(SHAPES)
    out = {}
    for name, shape in SHAPES:
        fan_in = int(np.prod(shapes[name.split(".")[0] + ".weight"][1:]))
        bound = 1.0 / np.sqrt(fan_in)
        out[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
    return out


def flops(batch: int, mode: str) -> float:
    """Multiply-add FLOPs (2 per MAC) of the conv and linear layers: the forward for inference,
    three times it (forward, dx, dweight) for a training step."""
    conv = sum(K * H * W * C * k * k for C, H, W, K, k, *_ in CONVS)
    macs = conv + 3136 * 384 + 384 * 192 + 192 * 10
    fwd = 2.0 * batch * macs
    return fwd if mode == "inference" else 3.0 * fwd


def conv_algorithms(batch: int, mode: str) -> str:
    """The algorithms conv2d's "auto" runs on the two convolutions (forward, and for a training
    step the backward too): "winograd" when all do, else the distinct names joined by "+"."""
    from bench.workloads import conv_algorithm

    shapes = [(batch, *c) for c in CONVS]
    directions = ("forward",) if mode == "inference" else ("forward", "backward")
    names = {conv_algorithm(s, d) for s in shapes for d in directions}
    return "+".join(sorted(names))


def data(batch: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)
    return x, rng.integers(0, 10, batch)


def cnncore_model(w: dict[str, np.ndarray]) -> Any:
    from cnncore import nn

    model = nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(3, 64, 5, padding=2)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(3, 2)),
                ("norm1", nn.LocalResponseNorm(5)),
                ("conv2", nn.Conv2d(64, 64, 5, padding=2)),
                ("relu2", nn.ReLU()),
                ("pool2", nn.MaxPool2d(3, 2)),
                ("flatten", nn.Flatten()),
                ("fc3", nn.Linear(3136, 384)),
                ("relu3", nn.ReLU()),
                ("drop3", nn.Dropout(0.5, seed=0)),
                ("fc4", nn.Linear(384, 192)),
                ("relu4", nn.ReLU()),
                ("fc5", nn.Linear(192, 10)),
            ]
        )
    )
    model.load_state_dict({k: v.copy() for k, v in w.items()})
    return model


def torch_model(torch: Any, w: dict[str, np.ndarray]) -> Any:
    tnn = torch.nn
    model = tnn.Sequential(
        OrderedDict(
            [
                ("conv1", tnn.Conv2d(3, 64, 5, padding=2)),
                ("relu1", tnn.ReLU()),
                ("pool1", tnn.MaxPool2d(3, 2)),
                ("norm1", tnn.LocalResponseNorm(5)),
                ("conv2", tnn.Conv2d(64, 64, 5, padding=2)),
                ("relu2", tnn.ReLU()),
                ("pool2", tnn.MaxPool2d(3, 2)),
                ("flatten", tnn.Flatten()),
                ("fc3", tnn.Linear(3136, 384)),
                ("relu3", tnn.ReLU()),
                ("drop3", tnn.Dropout(0.5)),
                ("fc4", tnn.Linear(384, 192)),
                ("relu4", tnn.ReLU()),
                ("fc5", tnn.Linear(192, 10)),
            ]
        )
    )
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in w.items()})
    return model


def cnncore_step(batch: int, mode: str, seed: int = 0):
    """``run()`` doing one training step (``mode="train"``) or one inference forward."""
    from cnncore import nn, optim

    model = cnncore_model(weights(seed))
    x, y = data(batch)
    if mode == "inference":
        model.eval()

        def infer():
            with nn.no_grad():
                return model(x)

        return infer
    model.train()
    loss = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step():
        opt.zero_grad()
        value = loss(model(x), y)
        model.backward_params(loss.backward())  # as torch: the input needs no gradient
        opt.step()
        return value

    return step


def torch_step(torch: Any, batch: int, mode: str, seed: int = 0):
    model = torch_model(torch, weights(seed))
    xn, yn = data(batch)
    x, y = torch.from_numpy(xn), torch.from_numpy(yn)
    if mode == "inference":
        model.eval()

        def infer():
            with torch.inference_mode():
                return model(x)

        return infer
    model.train()
    loss = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step():
        opt.zero_grad()
        value = loss(model(x), y)
        value.backward()
        opt.step()
        return value

    return step
