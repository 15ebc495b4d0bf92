"""cnncore.dense: refusals, bad input, sparse_kernel, the geometry (receptive field, halo) and the
cost model (counted independently from the shapes the networks really produce)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncore import dense, models, nn, summary
from cnncore.dense.layers import SharedConv
from cnncore.functional import conv2d


def small(*layers):
    return nn.Sequential(*layers).eval()


# -- refusals: ValueError naming the layer and why -------------------------------------------------
@pytest.mark.parametrize(
    ("model", "patch", "match"),
    [
        (
            small(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 2)),
            8,
            r"layer '0' \(Conv2d\).*padding",
        ),
        (
            small(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2, padding=1), nn.Flatten(), nn.Linear(64, 2)),
            6,
            r"layer '1' \(MaxPool2d\).*padding",
        ),
        (
            small(nn.Conv2d(3, 4, 3), nn.LocalContrastNorm(3), nn.Flatten(), nn.Linear(64, 2)),
            6,
            r"layer '1' \(LocalContrastNorm\).*border",
        ),
        (
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.Flatten(), nn.Linear(64, 2)),
            6,
            r"layer '1' \(Dropout\).*training mode",
        ),
        (small(nn.Conv2d(3, 4, 6), nn.Linear(4, 2)), 6, r"layer '1' \(Linear\).*Flatten"),
        (
            small(nn.Flatten(), nn.Linear(3 * 36, 4), nn.Conv2d(4, 2, 1)),
            6,
            r"layer '2' \(Conv2d\).*after Flatten",
        ),
        (
            small(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(99, 2)),
            6,
            r"layer '2' \(Linear\).*in_features=99",
        ),
        (
            small(nn.Conv2d(3, 4, 3), nn.Conv2d(5, 2, 4)),
            6,
            r"layer '1' \(Conv2d\).*5 input channels",
        ),
        (small(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 2)), 6, r"3x3 map per patch"),
        (
            small(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 5)),
            6,
            r"patch_size \(6, 6\) is too small.*'1'",
        ),
        (small(nn.Conv2d(3, 4, 3), nn.Flatten()), 6, r"Flatten of a 4x4 map"),
        (
            small(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Softmax(), nn.Linear(64, 2)),
            6,
            r"layer '2' \(Softmax\).*flattened 4x4",
        ),
        (
            small(nn.Conv2d(3, 4, 3), nn.Concat(nn.Conv2d(4, 2, 4), nn.Conv2d(4, 2, 4))),
            6,
            r"layer '1' \(Concat\).*branches",
        ),
        (small(nn.ReLU()), 6, r"no convolution"),
    ],
)
def test_unconvertible_models_are_refused(model, patch, match):
    for fn in (dense.to_dense, dense.to_fcn, dense.analyze):
        with pytest.raises(ValueError, match=match):
            fn(model, patch)
    with pytest.raises(ValueError, match=match):
        dense.predict(model, np.zeros((1, 3, 4, 4), np.float32), patch)


def test_nested_names_and_global_pool_convert():
    inner = nn.Sequential(nn.Conv2d(2, 3, 2, dtype=np.float64), nn.ReLU())
    model = small(inner, nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(3, 2, dtype=np.float64))
    plan = dense.analyze(model, 5)
    assert [s.name for s in plan.stages][:2] == ["0.0", "0.1"]
    assert plan.receptive_field == (5, 5) and plan.stride == (1, 1)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 3))
    xp = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    ref = np.stack([model(xp[:, :, i : i + 5, j : j + 5])[0] for i in range(4) for j in range(3)])
    for method in ("dsparse", "fcn", "patchwise"):
        s = dense.predict(model, x, 5, method)
        np.testing.assert_allclose(s[0].reshape(2, -1).T, ref, rtol=1e-12, atol=1e-13)


def test_dropout_in_the_dense_network_is_eval_only():
    model = small(
        nn.Conv2d(1, 2, 3, dtype=np.float64),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(2, 2, dtype=np.float64),
    )
    d = dense.to_dense(model, 3)
    x = np.ones((1, 1, 4, 4))
    d(x)
    d.train()
    with pytest.raises(ValueError, match=r"'1' \(Dropout\(p=0.5\)\).*training mode"):
        d(x)
    p0 = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(0.0), nn.Flatten(), nn.Linear(2, 2))
    dense.to_dense(p0, 3).train()(np.ones((1, 1, 4, 4), np.float32))  # p = 0 is the identity


def test_bad_input():
    model = models.toy15()
    x = np.zeros((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="method"):
        dense.predict(model, x, 15, method="scan")
    with pytest.raises(ValueError, match="images must have 4 dimensions"):
        dense.predict(model, x[0], 15)
    with pytest.raises(ValueError, match=r"images must have 3 channels.*\(1, 2, 5, 5\)"):
        dense.predict(model, x[:, :2], 15)
    with pytest.raises(TypeError, match="images dtype float64 does not match parameter"):
        dense.predict(model, x.astype(np.float64), 15)
    with pytest.raises(TypeError, match="float32 or float64"):
        dense.predict(model, x.astype(np.int32), 15)
    with pytest.raises(ValueError, match="tile must be >= 1"):
        dense.predict(model, x, 15, tile=0)
    with pytest.raises(ValueError, match="patch_size must be >= 1"):
        dense.predict(model, x, 0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        dense.predict(model, x, 15, "patchwise", batch_size=0)
    with pytest.raises(TypeError, match="model must be a cnncore.nn.Module"):
        dense.to_dense(torch.nn.Conv2d(3, 2, 15), 15)
    d = dense.to_dense(model, 15)
    with pytest.raises(TypeError, match="images dtype float64 does not match parameter 'conv1"):
        d(x.astype(np.float64))
    with pytest.raises(TypeError, match="GPU array|float32 or float64"):
        d(x.astype(np.float16))
    with pytest.raises(RuntimeError, match="forward pass"):
        d.backward(np.zeros((1, 2, 5, 5), np.float32))
    d(x)
    with pytest.raises(ValueError, match=r"dy must have the scores' shape \(1, 2, 5, 5\)"):
        d.backward(np.zeros((1, 2, 5, 4), np.float32))


# -- sparse_kernel ---------------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4))
def test_sparse_kernel_is_the_dilated_convolution(kh, kw, dh, dw):
    rng = np.random.default_rng(kh * 100 + kw * 10 + dh)
    w = rng.standard_normal((2, 3, kh, kw))
    x = rng.standard_normal((1, 3, dh * (kh - 1) + 4, dw * (kw - 1) + 3))
    s = dense.sparse_kernel(w, (dh, dw))
    assert s.shape == (2, 3, dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    assert np.count_nonzero(s) == np.count_nonzero(w)
    np.testing.assert_array_equal(s[:, :, ::dh, ::dw], w)
    np.testing.assert_allclose(
        conv2d(x, s), conv2d(x, w, dilation=(dh, dw)), rtol=1e-12, atol=1e-12
    )
    ref = TF.conv2d(torch.tensor(x), torch.tensor(w), dilation=(dh, dw)).numpy()
    np.testing.assert_allclose(conv2d(x, s), ref, rtol=1e-12, atol=1e-12)


def test_sparse_kernel_bad_input():
    with pytest.raises(ValueError, match="d must be >= 1"):
        dense.sparse_kernel(np.ones((1, 1, 2, 2)), 0)
    with pytest.raises(ValueError, match="weight must have 4 dimensions"):
        dense.sparse_kernel(np.ones((2, 2)), 2)
    with pytest.raises(TypeError, match="weight must be float32 or float64"):
        dense.sparse_kernel(np.ones((1, 1, 2, 2), dtype=np.int64), 2)


# -- geometry --------------------------------------------------------------------------------------
def test_geometry_of_the_benchmark_networks():
    p15 = dense.analyze(models.toy15(), 15)
    assert p15.receptive_field == (15, 15) and p15.stride == (6, 6)
    assert p15.halo() == ((7, 7), (7, 7)) and p15.halo("patchwise") == ((7, 7), (7, 7))
    assert [s.dense_dilation for s in p15.stages if s.spatial] == [
        (1, 1),
        (1, 1),
        (2, 2),
        (2, 2),
        (6, 6),
    ]
    p65 = dense.analyze(models.pixel65(), 65)
    assert p65.receptive_field == (60, 60) and p65.stride == (8, 8)
    assert p65.halo() == ((32, 27), (32, 27)) and p65.halo("patchwise") == ((32, 32), (32, 32))
    fc4 = next(s for s in p65.stages if s.name == "fc4")
    assert fc4.weight_shape == (256, 128, 5, 5) and fc4.dense_dilation == (8, 8)
    d = dense.to_dense(models.pixel65(), 65)
    assert isinstance(d.fc4, SharedConv) and d.fc4.dilation == (8, 8)
    assert d.pool3.dilation == (4, 4) and d.pool3.stride == (1, 1)


def test_receptive_field_equals_the_pixels_that_change_the_score():
    """Perturb each pixel of a patch: exactly the top-left R x R block changes the score (pools on
    odd sizes drop their last row and column, so R < P, as in pixel65)."""
    nn.manual_seed(5)
    model = small(
        nn.Conv2d(1, 2, 3, dtype=np.float64),
        nn.MaxPool2d(2),  # 11 -> 9 -> 4 (drops a row)
        nn.Conv2d(2, 2, 2, dtype=np.float64),
        nn.AvgPool2d(2),  # 4 -> 3 -> 1 (drops a row)
        nn.Flatten(),
        nn.Linear(2, 2, dtype=np.float64),
    )
    P = 11
    plan = dense.analyze(model, P)
    assert plan.receptive_field == (1 + 2 + 1 + 2 + 2, 8)
    p = np.random.default_rng(0).standard_normal((1, 1, P, P))
    changed = np.zeros((P, P), bool)
    for delta in (1e3, -1e3):  # one of the two makes a max pool take the perturbed value
        probes = np.repeat(p, P * P, axis=0)
        probes.reshape(P * P, P * P)[np.arange(P * P), np.arange(P * P)] += delta
        changed |= (model(probes) != model(p)).any(axis=1).reshape(P, P)
    R = plan.receptive_field[0]
    want = np.zeros((P, P), bool)
    want[:R, :R] = True
    np.testing.assert_array_equal(changed, want)
    assert plan.halo() == ((5, R - 1 - 5), (5, R - 1 - 5))


# -- cost model ------------------------------------------------------------------------------------
def test_cost_per_pixel_limits():
    c = dense.cost(models.pixel65(), 65)
    dense_macs = 32 * 3 * 25 + 64 * 32 * 25 + 128 * 64 * 9 + 256 * 3200 + 2 * 256
    patch_macs = 61**2 * 32 * 75 + 26**2 * 64 * 800 + 11**2 * 128 * 576 + 256 * 3200 + 2 * 256
    assert c["per_pixel"]["dsparse"]["macs"] == dense_macs
    assert c["per_pixel"]["patchwise"]["macs"] == patch_macs
    assert c["speedup_macs"]["dsparse"] == pytest.approx(patch_macs / dense_macs)
    # FCN: S*S passes, each layer at its output stride D: S^2 / D^2 outputs per pixel
    fcn = 64 * 32 * 75 + 16 * 64 * 800 + 4 * 128 * 576 + 256 * 3200 + 2 * 256
    assert c["per_pixel"]["fcn"]["macs"] == fcn
    assert "dsparse 56.5x" in dense.cost_table(models.pixel65(), 65)


def _measured_macs(net, block):
    """MACs of a converted network's convolutions from the shapes its forward really produces."""
    total = 0
    x = block
    for m in net:
        y = m(x)
        if isinstance(m, SharedConv):
            K, C, kh, kw = m.shape
            total += K * C * kh * kw * y.shape[2] * y.shape[3] * y.shape[0]
        x = y
    return total


def grouped_classifier():
    """A 9x9 patch classifier with a grouped convolution (2 groups): total stride 4."""
    return nn.Sequential(
        nn.Conv2d(4, 6, 3, stride=2, groups=2),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 3),
    )


@pytest.mark.parametrize(
    "make, patch, channels, stride",
    [(models.toy15, 15, 3, 6), (grouped_classifier, 9, 4, 4)],
    ids=["toy15", "grouped"],
)
@pytest.mark.parametrize("hw", [(5, 7), (13, 6)])
def test_cost_for_an_image_matches_the_networks(hw, make, patch, channels, stride):
    model = make()
    H, W = hw
    c = dense.cost(model, patch, hw)
    d, f = dense.to_dense(model, patch), dense.to_fcn(model, patch)
    (top, bottom), (left, right) = d.plan.halo("dsparse")
    rows, cols = (-top, H + bottom), (-left, W + right)
    from cnncore.dense.tiling import window

    block = window(np.zeros((1, channels, H, W), np.float32), rows, cols)
    with nn.no_grad():
        assert c["per_pixel"]["dsparse"]["macs"] * H * W == pytest.approx(_measured_macs(d, block))
        (ft, fb), (fl, fr) = f.plan.halo("fcn")
        fblock = window(np.zeros((1, channels, H, W), np.float32), (-ft, H + fb), (-fl, W + fr))
        fcn = sum(
            _measured_macs(f, fblock[:, :, a:, b:])
            for a in range(min(stride, H))
            for b in range(min(stride, W))
        )
    assert c["per_pixel"]["fcn"]["macs"] * H * W == pytest.approx(fcn)


def every_kind_classifier():
    """A 21x21 patch classifier with a grouped, a dilated and a strided convolution, max and
    average pooling, pointwise layers and two Linear layers."""
    return nn.Sequential(
        nn.Conv2d(4, 6, 3, groups=2),  # 19
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, dilation=2),  # 15
        nn.MaxPool2d(3, 2),  # 7
        nn.Conv2d(8, 8, 3, stride=2, groups=4),  # 3
        nn.AvgPool2d(2, 1),  # 2
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 10),
        nn.ReLU(),
        nn.Linear(10, 3),
    )


@pytest.mark.parametrize("make, patch", [(every_kind_classifier, 21), (models.toy15, 15)])
def test_cost_counts_macs_like_summary(make, patch):
    """Patch scanning runs the classifier on one patch per pixel, so its MACs per pixel, layer by
    layer, are summary's MACs of that patch: one rule, also for groups, dilation and Linear."""
    model = make()
    c = dense.cost(model, patch)
    rows = summary(model, (dense.analyze(model, patch).in_channels, patch, patch))
    cost_macs = {row["name"]: row["patchwise"].get("macs", 0) for row in c["layers"]}
    summary_macs = {row["name"]: row["macs"] for row in rows if row["type"] != "Flatten"}
    assert cost_macs == summary_macs
    grouped = [row for row in rows if row["type"] == "Conv2d"][0]
    if make is every_kind_classifier:  # groups=2: each filter reads 2 of the 4 channels
        assert grouped["macs"] == 6 * 2 * 3 * 3 * 19 * 19
    assert sum(summary_macs.values()) == c["per_pixel"]["patchwise"]["macs"]
