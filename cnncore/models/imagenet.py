"""The lecture's ImageNet architectures, single tower, without batch normalisation.

Layer names follow the papers and their Caffe releases: ``conv1, relu1, norm1, pool1, ...,
flatten, fc6, relu6, drop6, fc7, relu7, drop7, fc8``.  Where a paper's layer sizes need Caffe's
ceil-mode pooling, a symmetric padding of 1 gives the same output sizes (noted per model).
Response normalization is Krizhevsky's (``krizhevsky_lrn``).
"""

from __future__ import annotations

from cnncore import nn
from cnncore.models._build import krizhevsky_lrn, positive_int, sequential

Layers = list[tuple[str, nn.Module]]


def _classifier(in_features: int, hidden: tuple[int, int], num_classes: int, p: float = 0.5):
    """flatten, fc6, relu6, drop6, fc7, relu7, drop7, fc8."""
    h6, h7 = hidden
    return [
        ("flatten", nn.Flatten()),
        ("fc6", nn.Linear(in_features, h6)),
        ("relu6", nn.ReLU()),
        ("drop6", nn.Dropout(p)),
        ("fc7", nn.Linear(h6, h7)),
        ("relu7", nn.ReLU()),
        ("drop7", nn.Dropout(p)),
        ("fc8", nn.Linear(h7, num_classes)),
    ]


def _conv(
    i: int | str, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, groups: int = 1
) -> Layers:
    conv = nn.Conv2d(cin, cout, k, stride, padding, groups=groups)
    return [(f"conv{i}", conv), (f"relu{i}", nn.ReLU())]


def alexnet(num_classes: int = 1000, groups: int = 1) -> nn.Sequential:
    """AlexNet (Krizhevsky et al. 2012) as one tower, input 3 x 227 x 227.

    conv1 96 11x11/4, norm1, pool1 3x3/2; conv2 256 5x5 pad 2, norm2, pool2 3x3/2; conv3 384,
    conv4 384, conv5 256 (3x3 pad 1), pool5 3x3/2; fc6 4096, fc7 4096, fc8 (dropout 0.5 after
    fc6 and fc7).  Neurons per layer 290400, 186624, 64896, 64896, 43264, 4096, 4096, 1000.
    By default the two GPU towers are merged into full convolutions (conv2, conv4 and conv5 see
    all input channels, as in Krizhevsky 2014 and torchvision): 62,378,344 parameters.
    ``groups=2`` gives the paper's towers (conv2, conv4 and conv5 grouped, each filter seeing
    the channels of its own tower): 60,965,224 parameters.
    """
    k = positive_int(num_classes, "num_classes")
    g = positive_int(groups, "groups")
    if g not in (1, 2):
        raise ValueError(f"groups must be 1 (merged towers) or 2 (the paper's), got {g}")
    layers = [
        *_conv(1, 3, 96, 11, stride=4),
        ("norm1", krizhevsky_lrn()),
        ("pool1", nn.MaxPool2d(3, stride=2)),
        *_conv(2, 96, 256, 5, padding=2, groups=g),
        ("norm2", krizhevsky_lrn()),
        ("pool2", nn.MaxPool2d(3, stride=2)),
        *_conv(3, 256, 384, 3, padding=1),
        *_conv(4, 384, 384, 3, padding=1, groups=g),
        *_conv(5, 384, 256, 3, padding=1, groups=g),
        ("pool5", nn.MaxPool2d(3, stride=2)),
        *_classifier(256 * 6 * 6, (4096, 4096), k),
    ]
    return sequential(layers, (3, 227, 227))


def clarifai(num_classes: int = 1000) -> nn.Sequential:
    """ZF net (Zeiler and Fergus 2013, the Clarifai entry), input 3 x 224 x 224.

    conv1 96 7x7/2 -> 110, pool1 3x3/2 -> 55, norm1; conv2 256 5x5/2 -> 26, pool2 3x3/2 -> 13,
    norm2; conv3 384, conv4 384, conv5 256 (3x3 pad 1), pool5 3x3/2 -> 6; fc6 4096, fc7 4096,
    fc8.  The paper's 110 and 55 and 13 need padding 1 in conv1, pool1 and pool2.
    """
    k = positive_int(num_classes, "num_classes")
    layers = [
        *_conv(1, 3, 96, 7, stride=2, padding=1),
        ("pool1", nn.MaxPool2d(3, stride=2, padding=1)),
        ("norm1", krizhevsky_lrn()),
        *_conv(2, 96, 256, 5, stride=2),
        ("pool2", nn.MaxPool2d(3, stride=2, padding=1)),
        ("norm2", krizhevsky_lrn()),
        *_conv(3, 256, 384, 3, padding=1),
        *_conv(4, 384, 384, 3, padding=1),
        *_conv(5, 384, 256, 3, padding=1),
        ("pool5", nn.MaxPool2d(3, stride=2)),
        *_classifier(256 * 6 * 6, (4096, 4096), k),
    ]
    return sequential(layers, (3, 224, 224))


def overfeat(num_classes: int = 1000) -> nn.Sequential:
    """OverFeat's fast model (Sermanet et al. 2014, Table 1), input 3 x 231 x 231.

    conv1 96 11x11/4 -> 56, pool1 2x2/2 -> 28; conv2 256 5x5 -> 24, pool2 2x2/2 -> 12;
    conv3 512, conv4 1024, conv5 1024 (3x3 pad 1), pool5 2x2/2 -> 6; fc6 3072, fc7 4096, fc8.
    No response normalization; dropout after fc6 and fc7.  About 145 M parameters.
    """
    k = positive_int(num_classes, "num_classes")
    layers = [
        *_conv(1, 3, 96, 11, stride=4),
        ("pool1", nn.MaxPool2d(2, stride=2)),
        *_conv(2, 96, 256, 5),
        ("pool2", nn.MaxPool2d(2, stride=2)),
        *_conv(3, 256, 512, 3, padding=1),
        *_conv(4, 512, 1024, 3, padding=1),
        *_conv(5, 1024, 1024, 3, padding=1),
        ("pool5", nn.MaxPool2d(2, stride=2)),
        *_classifier(1024 * 6 * 6, (3072, 4096), k),
    ]
    return sequential(layers, (3, 231, 231))


# Simonyan and Zisserman 2015, Table 1: per stage, the convolutions as (filters, kernel size).
_A = [[(64, 3)], [(128, 3)], [(256, 3)] * 2, [(512, 3)] * 2, [(512, 3)] * 2]
_B = [[(64, 3)] * 2, [(128, 3)] * 2, [(256, 3)] * 2, [(512, 3)] * 2, [(512, 3)] * 2]
VGG_CONFIGS: dict[str, list[list[tuple[int, int]]]] = {
    "A": _A,
    "A-LRN": _A,
    "B": _B,
    "C": _B[:2] + [s + [(s[0][0], 1)] for s in _B[2:]],
    "D": _B[:2] + [[(c, 3)] * 3 for c in (256, 512, 512)],
    "E": _B[:2] + [[(c, 3)] * 4 for c in (256, 512, 512)],
}


def vgg(config: str = "D", num_classes: int = 1000) -> nn.Sequential:
    """VGG net (Simonyan and Zisserman 2015), configuration ``"A"``, ``"A-LRN"``, ``"B"``,
    ``"C"``, ``"D"`` (VGG-16) or ``"E"`` (VGG-19); input 3 x 224 x 224.

    Stage s: ``conv{s}_{i}`` (3x3 pad 1, or C's 1x1) and ``relu{s}_{i}``, then ``pool{s}`` max
    2x2/2; A-LRN has ``norm1`` after ``relu1_1``.  Then fc6 4096, fc7 4096, fc8 with dropout.
    Parameters (millions, as the paper prints them): 133, 133, 133, 134, 138, 144.
    """
    if not isinstance(config, str) or config not in VGG_CONFIGS:
        raise ValueError(f"config must be one of {sorted(VGG_CONFIGS)}, got {config!r}")
    k = positive_int(num_classes, "num_classes")
    layers: Layers = []
    cin = 3
    for s, stage in enumerate(VGG_CONFIGS[config], start=1):
        for i, (cout, ks) in enumerate(stage, start=1):
            layers += _conv(f"{s}_{i}", cin, cout, ks, padding=ks // 2)
            if config == "A-LRN" and (s, i) == (1, 1):
                layers.append(("norm1", krizhevsky_lrn()))
            cin = cout
        layers.append((f"pool{s}", nn.MaxPool2d(2, stride=2)))
    layers += _classifier(512 * 7 * 7, (4096, 4096), k)
    return sequential(layers, (3, 224, 224))


def _chatfield(
    conv1: tuple[int, int, int],
    pool1: tuple[int, int, int],
    conv2: tuple[int, int, int, int],
    norm2: bool,
    pool2: tuple[int, int, int],
    width: int,
    pool5: tuple[int, int, int],
    num_classes: int,
) -> nn.Sequential:
    """conv1: (filters, kernel, stride), unpadded; conv2: (filters, kernel, stride, padding);
    pools: (kernel, stride, padding); conv3-5: ``width`` filters 3x3 pad 1."""
    k = positive_int(num_classes, "num_classes")
    (f1, k1, s1), (f2, k2, s2, p2) = conv1, conv2
    layers = [
        *_conv(1, 3, f1, k1, stride=s1),
        ("norm1", krizhevsky_lrn()),
        ("pool1", nn.MaxPool2d(*pool1)),
        *_conv(2, f1, f2, k2, stride=s2, padding=p2),
        *([("norm2", krizhevsky_lrn())] if norm2 else []),
        ("pool2", nn.MaxPool2d(*pool2)),
        *_conv(3, f2, width, 3, padding=1),
        *_conv(4, width, width, 3, padding=1),
        *_conv(5, width, width, 3, padding=1),
        ("pool5", nn.MaxPool2d(*pool5)),
        *_classifier(width * 6 * 6, (4096, 4096), k),
    ]
    return sequential(layers, (3, 224, 224))


def cnn_f(num_classes: int = 1000) -> nn.Sequential:
    """CNN-F (Chatfield et al. 2014, "fast"), input 3 x 224 x 224.

    conv1 64 11x11/4 -> 54, norm1, pool1 3x3/2 -> 27; conv2 256 5x5 pad 2, norm2, pool2 3x3/2
    -> 13; conv3-5 256 3x3 pad 1, pool5 3x3/2 -> 6; fc6 4096, fc7 4096, fc8.  Pool1 has
    padding 1 where the released model pads only bottom and right (same sizes).
    """
    return _chatfield(
        (64, 11, 4), (3, 2, 1), (256, 5, 1, 2), True, (3, 2, 0), 256, (3, 2, 0), num_classes
    )


def cnn_m(num_classes: int = 1000) -> nn.Sequential:
    """CNN-M (Chatfield et al. 2014, "medium"), input 3 x 224 x 224.

    conv1 96 7x7/2 -> 109, norm1, pool1 3x3/2 -> 54; conv2 256 5x5/2 pad 1 -> 26, norm2, pool2
    3x3/2 -> 13; conv3-5 512 3x3 pad 1, pool5 3x3/2 -> 6; fc6 4096, fc7 4096, fc8.  Pool2 has
    padding 1 where the released model pads only bottom and right (same sizes).
    """
    return _chatfield(
        (96, 7, 2), (3, 2, 0), (256, 5, 2, 1), True, (3, 2, 1), 512, (3, 2, 0), num_classes
    )


def cnn_s(num_classes: int = 1000) -> nn.Sequential:
    """CNN-S (Chatfield et al. 2014, "slow"), input 3 x 224 x 224.

    conv1 96 7x7/2 -> 109, norm1, pool1 3x3/3 -> 36; conv2 256 5x5 pad 1 -> 34, pool2 2x2/2 ->
    17; conv3-5 512 3x3 pad 1, pool5 3x3/3 -> 6; fc6 4096, fc7 4096, fc8.  Pool5 has padding 1
    where the released model pads only bottom and right (same sizes).
    """
    return _chatfield(
        (96, 7, 2), (3, 3, 0), (256, 5, 1, 1), False, (2, 2, 0), 512, (3, 3, 1), num_classes
    )


def nin(num_classes: int = 1000) -> nn.Sequential:
    """Network in Network for ImageNet (Lin et al. 2014; the released Caffe model), input
    3 x 224 x 224: four mlpconv blocks, each a convolution and two 1x1 convolutions ("cccp")
    with ReLUs, then global average pooling over the class maps.

    conv1 96 11x11/4, cccp1 96, cccp2 96, pool1 3x3/2; conv2 256 5x5 pad 2, cccp3, cccp4,
    pool2 3x3/2; conv3 384 3x3 pad 1, cccp5, cccp6, pool3 3x3/2, drop3 0.5; conv4 1024 3x3 pad
    1, cccp7 1024, cccp8 num_classes, pool4 global average.  About 7.6 M parameters; outputs
    ``(N, num_classes, 1, 1)``.
    """
    k = positive_int(num_classes, "num_classes")
    layers: Layers = []
    blocks = [(3, 96, 11, 4, 0), (96, 256, 5, 1, 2), (256, 384, 3, 1, 1), (384, 1024, 3, 1, 1)]
    for b, (cin, cout, ks, stride, pad) in enumerate(blocks, start=1):
        last = cout if b < 4 else k  # the last 1x1 convolution gives the class maps
        layers += [
            *_conv(b, cin, cout, ks, stride, pad),
            (f"cccp{2 * b - 1}", nn.Conv2d(cout, cout, 1)),
            (f"relu_cccp{2 * b - 1}", nn.ReLU()),
            (f"cccp{2 * b}", nn.Conv2d(cout, last, 1)),
            (f"relu_cccp{2 * b}", nn.ReLU()),
        ]
        if b < 4:
            layers.append((f"pool{b}", nn.MaxPool2d(3, stride=2)))
        if b == 3:
            layers.append(("drop3", nn.Dropout(0.5)))
    layers.append(("pool4", nn.GlobalAvgPool2d()))
    return sequential(layers, (3, 224, 224))


# Szegedy et al. 2015, Table 1: in_channels, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
GOOGLENET_INCEPTION: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


def googlenet(num_classes: int = 1000) -> nn.Sequential:
    """GoogLeNet (Szegedy et al. 2015, Table 1), without the auxiliary classifiers; input
    3 x 224 x 224.

    conv1 64 7x7/2 pad 3, pool1 3x3/2, norm1; conv2_reduce 64 1x1, conv2 192 3x3 pad 1, norm2,
    pool2 3x3/2; inception_3a, inception_3b, pool3 3x3/2; inception_4a ... inception_4e, pool4
    3x3/2; inception_5a, inception_5b; pool5 average 7x7/1, drop5 0.4, flatten, fc.  The max
    pools have padding 1 (Caffe's ceil mode gives the same 56, 28, 14, 7).  About 7.0 M
    parameters (Table 1's params column sums to 6.8 M but disagrees with its own widths).
    """
    k = positive_int(num_classes, "num_classes")
    layers: Layers = [
        *_conv(1, 3, 64, 7, stride=2, padding=3),
        ("pool1", nn.MaxPool2d(3, stride=2, padding=1)),
        ("norm1", krizhevsky_lrn()),
        *_conv("2_reduce", 64, 64, 1),
        *_conv(2, 64, 192, 3, padding=1),
        ("norm2", krizhevsky_lrn()),
        ("pool2", nn.MaxPool2d(3, stride=2, padding=1)),
    ]
    for block, widths in GOOGLENET_INCEPTION.items():
        layers.append((f"inception_{block}", nn.Inception(*widths)))
        if block in ("3b", "4e"):
            layers.append((f"pool{block[0]}", nn.MaxPool2d(3, stride=2, padding=1)))
    layers += [
        ("pool5", nn.AvgPool2d(7, stride=1)),
        ("drop5", nn.Dropout(0.4)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(1024, k)),
    ]
    return sequential(layers, (3, 224, 224))
