"""cnncore.dense: the three methods against real patch scanning (PyTorch on explicit patches),
tiling, the Dask seam, and masked-backward gradients against patch-by-patch training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncore import dense, models, nn
from cnncore.dense.tiling import overlap_depth

torch.set_num_threads(1)
METHODS = ("dsparse", "fcn", "patchwise")


# -- references ------------------------------------------------------------------------------------
def torch_forward(model, x):
    """The patch classifier run by PyTorch ops (float64), layer by layer."""
    t = torch.as_tensor(x)
    for m in model:
        if isinstance(m, nn.Conv2d):
            b = None if m.bias is None else torch.as_tensor(m.bias.data)
            t = TF.conv2d(t, torch.as_tensor(m.weight.data), b, m.stride, 0, m.dilation, m.groups)
        elif isinstance(m, nn.MaxPool2d):
            t = TF.max_pool2d(t, m.kernel_size, m.stride, 0, m.dilation)
        elif isinstance(m, nn.AvgPool2d):
            assert tuple(m.dilation) == (1, 1)
            t = TF.avg_pool2d(t, m.kernel_size, m.stride, 0)
        elif isinstance(m, nn.LocalResponseNorm):
            t = TF.local_response_norm(t, m.size, m.alpha, m.beta, m.k)
        elif isinstance(m, nn.ReLU):
            t = torch.relu(t)
        elif isinstance(m, nn.Tanh):
            t = torch.tanh(t)
        elif isinstance(m, nn.Flatten):
            t = t.reshape(t.shape[0], -1)
        elif isinstance(m, nn.Linear):
            b = None if m.bias is None else torch.as_tensor(m.bias.data)
            t = TF.linear(t, torch.as_tensor(m.weight.data), b)
        elif isinstance(m, nn.Dropout):
            assert not m.training
        else:
            raise AssertionError(f"no torch twin for {type(m).__name__}")
    return t.reshape(t.shape[0], -1)


def padded(x, patch):
    """The pixel convention: (P-1)//2 zeros before, P//2 after on each axis."""
    (ph, pw) = patch
    return np.pad(x, ((0, 0), (0, 0), ((ph - 1) // 2, ph // 2), ((pw - 1) // 2, pw // 2)))


def all_patches(x, patch):
    """(N*H*W, C, Ph, Pw) patches of every pixel, pixel order n, i, j, cut by explicit slicing."""
    N, C, H, W = x.shape
    xp = padded(x, patch)
    return np.stack(
        [
            xp[n, :, i : i + patch[0], j : j + patch[1]]
            for n in range(N)
            for i in range(H)
            for j in range(W)
        ]
    )


def torch_scan(model, x, patch):
    """Real patch scanning: (N, K, H, W) scores from PyTorch on every explicit patch."""
    N, _, H, W = x.shape
    s = torch_forward(model, all_patches(x, patch)).numpy()
    return s.reshape(N, H, W, -1).transpose(0, 3, 1, 2)


# -- random convertible patch classifiers ----------------------------------------------------------
@st.composite
def patch_nets(draw, max_hw=9):
    """(model, patch, image shape): convs with strides and dilations, overlapping and not
    overlapping max/avg pooling, ReLU/Tanh/LRN, conv or FC heads, odd/even/rectangular patches."""
    ph = draw(st.integers(4, 13))
    pw = draw(st.sampled_from([ph, draw(st.integers(4, 13))]))
    C, K = draw(st.integers(1, 4)), draw(st.integers(2, 4))
    layers, c, h, w = [], C, ph, pw

    def fits(k, d):
        return d * (k - 1) + 1 <= min(h, w)

    def out(n, k, s, d):
        return (n - d * (k - 1) - 1) // s + 1

    for _ in range(draw(st.integers(1, 3))):
        k, s, d = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
        if fits(k, d):
            g = draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]))  # grouped convs too
            cout = draw(st.integers(1, 4)) if g == 1 else g * draw(st.integers(1, 2))
            layers.append(nn.Conv2d(c, cout, k, stride=s, dilation=d, dtype=np.float64, groups=g))
            c, h, w = cout, out(h, k, s, d), out(w, k, s, d)
        act = draw(st.sampled_from(["relu", "tanh", "lrn", None]))
        if act == "relu":
            layers.append(nn.ReLU())
        elif act == "tanh":
            layers.append(nn.Tanh())
        elif act == "lrn":
            layers.append(
                nn.LocalResponseNorm(draw(st.integers(1, 3)), alpha=0.5, beta=0.75, k=1.5)
            )
        pool = draw(st.sampled_from(["max", "avg", None]))
        k = draw(st.integers(2, 3))
        s = draw(st.integers(1, k))  # s < k overlapping, s == k not
        d = draw(st.integers(1, 2)) if pool == "max" else 1
        if pool and fits(k, d):
            cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
            layers.append(cls(k, stride=s, dilation=d))
            h, w = out(h, k, s, d), out(w, k, s, d)
    head = draw(st.sampled_from(["conv", "fc", "fc2"]))
    if head == "conv":
        layers.append(nn.Conv2d(c, K, (h, w), dtype=np.float64))
    else:
        layers.append(nn.Flatten())
        if head == "fc":
            layers.append(nn.Linear(c * h * w, K, dtype=np.float64))
        else:
            layers += [nn.Linear(c * h * w, 5, dtype=np.float64), nn.ReLU(), nn.Dropout(0.5)]
            layers.append(nn.Linear(5, K, dtype=np.float64))
    model = nn.Sequential(*layers).eval()
    shape = (draw(st.integers(1, 2)), C, draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw)))
    return model, (ph, pw), shape


def image(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# -- the lecture's toy example ---------------------------------------------------------------------
def test_toy15_first_pixel_is_top_left_patch_of_19x19():
    nn.manual_seed(0)
    model = models.toy15().double()
    x = image((1, 3, 5, 5))
    xp = np.pad(x, ((0, 0), (0, 0), (7, 7), (7, 7)))
    assert xp.shape == (1, 3, 19, 19)
    first = torch_forward(model, xp[:, :, :15, :15]).numpy()[0]
    ref = torch_scan(model, x, (15, 15))
    for method in METHODS:
        s = dense.predict(model, x, 15, method)
        assert s.shape == (1, 2, 5, 5) and s.dtype == np.float64
        np.testing.assert_allclose(s[0, :, 0, 0], first, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(s, ref, rtol=1e-11, atol=1e-12)


def test_pixel65_methods_agree_with_patch_scanning():
    nn.manual_seed(1)
    model = models.pixel65().double()
    x = image((1, 3, 2, 3), seed=1)  # 6 pixels: pixel65 patches are costly on a shared CI machine
    ref = torch_scan(model, x, (65, 65))
    for method in METHODS:
        np.testing.assert_allclose(dense.predict(model, x, 65, method), ref, rtol=1e-10, atol=1e-12)
    # float32: the same to float32 rounding
    m32 = models.pixel65()
    m32.load_state_dict(model.state_dict())
    s32 = dense.predict(m32.float(), x.astype(np.float32), 65)
    assert s32.dtype == np.float32
    np.testing.assert_allclose(s32, ref, rtol=1e-3, atol=1e-4)


# -- random networks: all methods == patch scanning, tiling == no tiling ---------------------------
@pytest.mark.filterwarnings("ignore:tile=.* is small:UserWarning")  # tiny tiles on purpose
@settings(max_examples=25, deadline=None)
@given(patch_nets(), st.integers(1, 4))
def test_random_networks_all_methods_equal_patch_scanning(net, tile):
    model, patch, shape = net
    x = image(shape)
    ref = torch_scan(model, x, patch)
    for method in METHODS:
        s = dense.predict(model, x, patch, method)
        np.testing.assert_allclose(s, ref, rtol=1e-10, atol=1e-12, err_msg=method)
        t = dense.predict(model, x, patch, method, tile=tile)
        np.testing.assert_allclose(t, s, rtol=1e-12, atol=1e-13, err_msg=f"{method} tile={tile}")


@settings(max_examples=10, deadline=None)
@given(patch_nets(max_hw=12), st.integers(2, 5), st.integers(2, 5))
def test_overlapping_blocks_give_predict(net, ch, cw):
    """The seam for chunked engines: chunks padded by ``depth`` on every side (zeros beyond the
    image, as Dask's map_overlap with boundary 0) through ``from_overlap`` give ``predict``."""
    model, patch, shape = net
    x = image(shape, seed=3)
    for method in ("dsparse", "fcn"):
        bp = dense.block_predictor(model, patch, method)
        dh, dw = bp.depth
        assert (dh, dw) == overlap_depth(bp.halo)
        xp = np.pad(x, ((0, 0), (0, 0), (dh, dh), (dw, dw)))
        out = np.empty((shape[0], bp.num_classes, shape[2], shape[3]))
        for r in range(0, shape[2], ch):
            for c in range(0, shape[3], cw):
                r1, c1 = min(r + ch, shape[2]), min(c + cw, shape[3])
                block = xp[:, :, r : r1 + 2 * dh, c : c1 + 2 * dw]
                out[:, :, r:r1, c:c1] = bp.from_overlap(block)
        np.testing.assert_allclose(
            out, dense.predict(model, x, patch, method), rtol=1e-12, atol=1e-13
        )


def test_block_predictor_survives_pickling():
    """What a chunked engine sends to its workers: one picklable object, the same scores."""
    import pickle

    nn.manual_seed(6)
    model = models.toy15().double()
    x = image((1, 3, 6, 7), seed=11)
    for method in METHODS:
        bp = dense.block_predictor(model, 15, method)
        twin = pickle.loads(pickle.dumps(bp))
        (top, bottom), (left, right) = twin.halo
        block = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
        np.testing.assert_allclose(twin(block), dense.predict(model, x, 15, method), rtol=1e-13)


def test_tiles_cover_the_image_once():
    from cnncore.dense.tiling import tiles

    for hw, t in [((7, 5), (3, 3)), ((10, 10), (4, 10)), ((1, 9), (2, 2)), ((6, 6), (6, 6))]:
        seen = np.zeros(hw, dtype=int)
        for r0, r1, c0, c1 in tiles(hw, t):
            assert 0 < r1 - r0 <= t[0] and 0 < c1 - c0 <= t[1]
            seen[r0:r1, c0:c1] += 1
        assert (seen == 1).all()


# -- to_fcn: the grid of the total stride ----------------------------------------------------------
@settings(max_examples=10, deadline=None)
@given(patch_nets())
def test_to_fcn_gives_the_stride_grid(net):
    model, patch, shape = net
    x = image(shape, seed=4)
    fcn = dense.to_fcn(model, patch)
    Sh, Sw = fcn.plan.stride
    with nn.no_grad():
        y = fcn(x)
    assert y.shape == (shape[0], fcn.plan.num_classes, -(-shape[2] // Sh), -(-shape[3] // Sw))
    np.testing.assert_allclose(
        y, torch_scan(model, x, patch)[:, :, ::Sh, ::Sw], rtol=1e-10, atol=1e-12
    )


# -- parameters are shared -------------------------------------------------------------------------
def test_converted_networks_share_the_parameters():
    nn.manual_seed(2)
    model = models.pixel65().double()
    ids = [id(p) for p in model.parameters()]
    for net in (dense.to_dense(model, 65), dense.to_fcn(model, 65)):
        assert sorted(id(p) for p in net.parameters()) == sorted(ids)
        assert list(net.state_dict()) == list(model.state_dict())
    d = dense.to_dense(model, 65)
    x = image((1, 3, 2, 3))
    before = d(x)
    model.fc4.weight.data *= 2.0  # an update of the classifier is seen by the dense network
    after = d(x)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, torch_scan(model, x, (65, 65)), rtol=1e-10, atol=1e-12)


# -- masked backward == patch-by-patch training ----------------------------------------------------
def patch_grads(model, x, patch, pixels, dscores):
    """Sum over the pixels of the gradients of patch-by-patch backward: parameter grads by name and
    the image gradient (patch gradients added back into the padded image, then cropped)."""
    N, C, H, W = x.shape
    (ph, pw) = patch
    model.zero_grad()
    patches = all_patches(x, patch)[pixels]
    s = model(patches)
    dp = model.backward(dscores.reshape(s.shape))
    dxp = np.zeros_like(padded(x, patch))
    for b, p in enumerate(pixels):
        n, rest = divmod(int(p), H * W)
        i, j = divmod(rest, W)
        dxp[n, :, i : i + ph, j : j + pw] += dp[b]
    t, l_ = (ph - 1) // 2, (pw - 1) // 2
    grads = {k: p.grad.copy() for k, p in model.named_parameters()}
    model.zero_grad()
    return grads, dxp[:, :, t : t + H, l_ : l_ + W]


@settings(max_examples=20, deadline=None)
@given(patch_nets(), st.floats(0.05, 1.0))
def test_masked_backward_equals_patch_by_patch(net, fraction):
    model, patch, shape = net
    x = image(shape, seed=5)
    rng = np.random.default_rng(6)
    N, _, H, W = shape
    d = dense.to_dense(model, patch)
    K = d.plan.num_classes
    mask = rng.random((N, H, W)) < fraction
    mask.flat[rng.integers(mask.size)] = True
    pixels = np.flatnonzero(mask)
    dy = rng.standard_normal((N, K, H, W)) * mask[:, None]
    model.zero_grad()
    scores = d(x)
    dx = d.backward(dy)
    got = {k: p.grad.copy() for k, p in model.named_parameters()}
    dsel = dy.transpose(0, 2, 3, 1).reshape(-1, K)[pixels]
    want, dx_ref = patch_grads(model, x, patch, pixels, dsel)
    assert scores.shape == (N, K, H, W)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-11, err_msg=k)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("method", ["dsparse", "fcn"])
def test_backward_params_equals_backward_s_parameter_gradients(method, monkeypatch):
    # training without the images' gradient: the d-sparse network's first layer asks its kernel
    # for none; the FCN (a backward of its own, no override) runs its backward
    from cnncore_kernels import conv as kconv

    model = models.toy15().double()
    net = (dense.to_dense if method == "dsparse" else dense.to_fcn)(model, 15)
    x = image((2, 3, 20, 23), seed=8)
    y = net(x)
    dy = np.random.default_rng(9).standard_normal(y.shape)
    model.zero_grad()
    net(x)
    net.backward(dy)
    want = {k: p.grad.copy() for k, p in model.named_parameters()}
    asked = []
    real = kconv.conv2d_backward

    def spy(*args):
        asked.append(args[-4])
        return real(*args)

    monkeypatch.setattr(kconv, "conv2d_backward", spy)
    model.zero_grad()
    net(x)
    with pytest.raises(ValueError, match="scores' shape"):
        net.backward_params(dy[:, :, 1:])  # refused: the forward's state stays for a retry
    assert net.backward_params(dy) is None
    got = {k: p.grad.copy() for k, p in model.named_parameters()}
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-12, err_msg=k)
    assert asked[-1] is (method != "dsparse") and all(asked[:-1])
    with pytest.raises(RuntimeError, match="forward pass"):
        net.backward_params(dy)  # the forward's state is used up, as by backward


def test_masked_cross_entropy_trains_like_patch_by_patch():
    """The dense network with CrossEntropyLoss(ignore_index) on sampled pixels: the loss and the
    gradients of patch-by-patch training on those pixels (mean over the counted pixels)."""
    nn.manual_seed(3)
    model = models.toy15(num_classes=3).double()
    x = image((2, 3, 8, 7), seed=7)
    rng = np.random.default_rng(8)
    targets = rng.integers(0, 3, (2, 8, 7))
    masked = np.where(rng.random(targets.shape) < 0.3, targets, -1)
    d = dense.to_dense(model, 15)
    loss = nn.CrossEntropyLoss(ignore_index=-1)
    model.zero_grad()
    value = loss(d(x), masked)
    d.backward(loss.backward())
    got = {k: p.grad.copy() for k, p in model.named_parameters()}

    pixels = np.flatnonzero(masked.reshape(-1) >= 0)
    model.zero_grad()
    s = model(all_patches(x, (15, 15))[pixels])
    ref_value = loss(s.reshape(len(pixels), 3), masked.reshape(-1)[pixels])
    model.backward(loss.backward().reshape(s.shape))
    assert value == pytest.approx(ref_value, rel=1e-12)
    for k, p in model.named_parameters():
        np.testing.assert_allclose(got[k], p.grad, rtol=1e-10, atol=1e-12, err_msg=k)


def test_dense_gradients_match_torch_autograd_of_the_dilated_network():
    """The d-sparse pixel65 as PyTorch ops (stride 1, dilation 1, 2, 4, 8): same scores and
    gradients (an oracle independent of our layers' backward)."""
    nn.manual_seed(4)
    model = models.pixel65().double()
    x = image((1, 3, 3, 2), seed=9)
    dy = np.random.default_rng(10).standard_normal((1, 2, 3, 2))
    d = dense.to_dense(model, 65)
    model.zero_grad()
    y = d(x)
    dx = d.backward(dy)

    params = {k: torch.tensor(p.data, requires_grad=True) for k, p in model.named_parameters()}
    xt = torch.tensor(x, requires_grad=True)
    t = TF.pad(xt, (32, 27, 32, 27))  # the receptive field is 60: 32 before, 27 after
    for i, dil in zip((1, 2, 3), (1, 2, 4), strict=True):
        t = TF.conv2d(t, params[f"conv{i}.weight"], params[f"conv{i}.bias"], 1, 0, dil)
        t = TF.max_pool2d(torch.relu(t), 2, 1, 0, dil)
    t = TF.conv2d(t, params["fc4.weight"].reshape(256, 128, 5, 5), params["fc4.bias"], 1, 0, 8)
    t = TF.conv2d(torch.relu(t), params["fc5.weight"].reshape(2, 256, 1, 1), params["fc5.bias"])
    np.testing.assert_allclose(y, t.detach().numpy(), rtol=1e-10, atol=1e-12)
    t.backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    for k, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, params[k].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)
