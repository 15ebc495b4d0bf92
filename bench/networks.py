"""The patch networks the benchmarks use, by name.

``toy15``, ``pixel65`` and ``pixel<P>`` for the ``cnncore.models.pixel_net`` family (P in
``PIXEL_NET_KERNELS``: 97, 129, 161, 193) come from ``cnncore.models``.  ``pixel321`` is defined
here: the same family (stage i: conv k_i, ReLU, max pool 2x2/2; then Linear -> 256, ReLU, Linear)
one stage deeper, patch 321, kernels 6, 9, 4, 3, 4, 4, filters 32, 64, 128, 128, 128, 128;
spatial sizes 321 316 158 150 75 72 36 34 17 14 7 4 2, every pooled size even so the receptive
field is the whole patch.  Its patch costs 5.0 G operations; the d-sparse network about 1.1 M per
pixel in the large-image limit (a theoretical speedup of 4500x; 1980x on a 384x384 image with its
borders), which is what the ">1500x, forward and backward" configuration needs (``pixel193``
reaches 1150x in theory at 512x512 and its backward needs 15 GB at 1024x1024).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

PIXEL321_KERNELS = (6, 9, 4, 3, 4, 4)
PIXEL321_CHANNELS = (32, 64, 128, 128, 128, 128)


def pixel321(in_channels: int = 3, num_classes: int = 2) -> Any:
    """The patch-321 member of the pixel_net family (see the module docstring), float32."""
    from cnncore import nn

    layers: list[tuple[str, Any]] = []
    size, cin = 321, in_channels
    for i, (k, cout) in enumerate(zip(PIXEL321_KERNELS, PIXEL321_CHANNELS, strict=True), 1):
        layers += [
            (f"conv{i}", nn.Conv2d(cin, cout, k)),
            (f"relu{i}", nn.ReLU()),
            (f"pool{i}", nn.MaxPool2d(2, stride=2)),
        ]
        size, cin = (size - k + 1) // 2, cout
    n = len(PIXEL321_KERNELS)
    layers += [
        ("flatten", nn.Flatten()),
        (f"fc{n + 1}", nn.Linear(cin * size * size, 256)),
        (f"relu{n + 1}", nn.ReLU()),
        (f"fc{n + 2}", nn.Linear(256, num_classes)),
    ]
    model = nn.Sequential(OrderedDict(layers))
    model.patch_size = 321
    model.input_shape = (in_channels, 321, 321)
    return model


def names() -> list[str]:
    from cnncore import models

    return (
        ["toy15", "pixel65"]
        + [f"pixel{p}" for p in sorted(models.PIXEL_NET_KERNELS)]
        + ["pixel321"]
    )


def build(name: str) -> Any:
    """The network called ``name`` (see ``names()``), in eval mode."""
    from cnncore import models

    if name == "toy15":
        net = models.toy15()
    elif name == "pixel65":
        net = models.pixel65()
    elif name == "pixel321":
        net = pixel321()
    elif name in [f"pixel{p}" for p in models.PIXEL_NET_KERNELS]:
        net = models.pixel_net(int(name[5:]))
    else:
        raise ValueError(f"unknown network {name!r}: use one of {', '.join(names())}")
    net.eval()
    return net
