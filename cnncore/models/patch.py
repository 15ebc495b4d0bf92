"""Patch classifiers for dense pixelwise classification (the benchmark networks).

Each maps a ``(N, C, P, P)`` patch to class scores and carries ``patch_size`` (P) and
``input_shape`` ((C, P, P)) as attributes, so ``cnncore.dense`` and ``summary`` need no extra
arguments.
"""

from __future__ import annotations

from cnncore import nn
from cnncore.models._build import positive_int, sequential


def toy15(in_channels: int = 3, num_classes: int = 2) -> nn.Sequential:
    """The lecture's toy network, patch 15x15 -> scores ``(N, num_classes, 1, 1)``.

    conv1 2x2/1 (16), relu1, pool1 max 2x2/2, conv2 2x2/1 (32), relu2, pool2 max 3x3/3,
    conv3 2x2/1 (num_classes).  Spatial sizes 15 -> 14 -> 7 -> 6 -> 2 -> 1; receptive field 15,
    total stride 6.
    """
    c = positive_int(in_channels, "in_channels")
    k = positive_int(num_classes, "num_classes")
    layers = [
        ("conv1", nn.Conv2d(c, 16, 2)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2, stride=2)),
        ("conv2", nn.Conv2d(16, 32, 2)),
        ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(3, stride=3)),
        ("conv3", nn.Conv2d(32, k, 2)),
    ]
    return sequential(layers, (c, 15, 15), patch_size=15)


def pixel65(in_channels: int = 3, num_classes: int = 2) -> nn.Sequential:
    """Patch 65x65 -> scores ``(N, num_classes)``.

    conv1 5x5 (32), relu1, pool1 max 2x2/2, conv2 5x5 (64), relu2, pool2 max 2x2/2,
    conv3 3x3 (128), relu3, pool3 max 2x2/2, flatten, fc4 3200->256, relu4, fc5 256->num_classes.
    Spatial sizes 65 -> 61 -> 30 -> 26 -> 13 -> 11 -> 5 (128*5*5 = 3200).  Pools 1 and 3 see an
    odd size and drop the last row and column, so the receptive field is 60 (total stride 8): the
    last 5 rows and columns of a patch do not change the scores.
    """
    c = positive_int(in_channels, "in_channels")
    k = positive_int(num_classes, "num_classes")
    layers = [
        ("conv1", nn.Conv2d(c, 32, 5)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2, stride=2)),
        ("conv2", nn.Conv2d(32, 64, 5)),
        ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2, stride=2)),
        ("conv3", nn.Conv2d(64, 128, 3)),
        ("relu3", nn.ReLU()),
        ("pool3", nn.MaxPool2d(2, stride=2)),
        ("flatten", nn.Flatten()),
        ("fc4", nn.Linear(128 * 5 * 5, 256)),
        ("relu4", nn.ReLU()),
        ("fc5", nn.Linear(256, k)),
    ]
    return sequential(layers, (c, 65, 65), patch_size=65)


# patch size -> convolution kernel of each stage; the stages have 32, 64, 128, 128, 128 filters.
# Every pooled size is even, so the receptive field is exactly the patch.
PIXEL_NET_KERNELS: dict[int, tuple[int, ...]] = {
    97: (6, 9, 4, 3),
    129: (6, 9, 6, 4),
    161: (6, 9, 4, 3, 4),
    193: (6, 9, 4, 3, 4),
}
_PIXEL_NET_CHANNELS = (32, 64, 128, 128, 128)


def pixel_net(patch_size: int, in_channels: int = 3, num_classes: int = 2) -> nn.Sequential:
    """Larger pixel65-style patch classifiers, for patches of 97, 129, 161 and 193 pixels.

    Stage i: ``conv{i}`` k_i x k_i, ``relu{i}``, ``pool{i}`` max 2x2/2; then ``flatten``,
    ``fc{n+1}`` -> 256, ``relu{n+1}``, ``fc{n+2}`` -> num_classes.  Kernels per stage
    (``PIXEL_NET_KERNELS``), filters 32, 64, 128, 128, 128:

    =====  ===============  ==================================  ==========  ==========
    patch  kernels          spatial sizes                       MACs/patch  redundancy
    =====  ===============  ==================================  ==========  ==========
    97     6, 9, 4, 3       97 92 46 38 19 16 8 6 3                  308 M         414
    129    6, 9, 6, 4       129 124 62 54 27 22 11 8 4               697 M         557
    161    6, 9, 4, 3, 4    161 156 78 70 35 32 16 14 7 4 2         1064 M        1265
    193    6, 9, 4, 3, 4    193 188 94 86 43 40 20 18 9 6 3         1616 M        1608
    =====  ===============  ==================================  ==========  ==========

    Every pooled size is even, so the receptive field is the whole patch; the total stride is
    2**stages.  "redundancy" is the patch's MACs divided by the MACs per pixel of the
    d-regularly sparse network (each layer's MACs at one output position): the speed-up over
    patch-by-patch scanning that dense inference can reach at best.
    """
    p = positive_int(patch_size, "patch_size")
    if p not in PIXEL_NET_KERNELS:
        raise ValueError(
            f"patch_size must be one of {sorted(PIXEL_NET_KERNELS)} (pixel65() gives 65), got {p}"
        )
    c = positive_int(in_channels, "in_channels")
    k = positive_int(num_classes, "num_classes")
    layers = []
    size, cin = p, c
    kernels = PIXEL_NET_KERNELS[p]
    for i, (ks, cout) in enumerate(
        zip(kernels, _PIXEL_NET_CHANNELS[: len(kernels)], strict=True), 1
    ):
        layers += [
            (f"conv{i}", nn.Conv2d(cin, cout, ks)),
            (f"relu{i}", nn.ReLU()),
            (f"pool{i}", nn.MaxPool2d(2, stride=2)),
        ]
        size, cin = (size - ks + 1) // 2, cout
    n = len(PIXEL_NET_KERNELS[p])
    layers += [
        ("flatten", nn.Flatten()),
        (f"fc{n + 1}", nn.Linear(cin * size * size, 256)),
        (f"relu{n + 1}", nn.ReLU()),
        (f"fc{n + 2}", nn.Linear(256, k)),
    ]
    return sequential(layers, (c, p, p), patch_size=p)
