"""`nn.from_torch` / `nn.to_torch`: outputs equal, weights copied, names kept, dense networks run
in PyTorch, everything else refused by name."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

from cnncore import dense, models, nn

tnn = torch.nn


def _torch_all_layers(dtype: torch.dtype = torch.float64) -> tnn.Sequential:
    """Every supported layer with its non-default settings, on a (N, 4, 17, 17) input."""
    torch.manual_seed(0)
    return tnn.Sequential(
        OrderedDict(
            conv1=tnn.Conv2d(4, 6, 3, stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=2),
            relu1=tnn.ReLU(),
            norm1=tnn.LocalResponseNorm(3, alpha=1e-3, beta=0.6, k=1.5),
            pool1=tnn.MaxPool2d(3, stride=2, padding=1, dilation=1),
            conv2=tnn.Conv2d(6, 8, 2, bias=False, padding="same", dilation=2),
            tanh2=tnn.Tanh(),
            pool2=tnn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
            pool3=tnn.MaxPool2d(2, stride=2, dilation=2),
            drop=tnn.Dropout(0.3),
            flatten=tnn.Flatten(),
            fc1=tnn.Linear(8 * 2 * 4, 10),
            fc2=tnn.Linear(10, 5),
            out=tnn.LogSoftmax(dim=1),
        )
    ).to(dtype)


def _forward_torch(m: tnn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return m(torch.from_numpy(x)).numpy()


def _forward(m: nn.Module, x: np.ndarray) -> np.ndarray:
    with nn.no_grad():
        return np.asarray(m(x))


@pytest.fixture
def x64() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((2, 4, 17, 17))


def test_from_torch_gives_the_same_outputs_names_and_weights(x64) -> None:
    t = _torch_all_layers().eval()
    c = nn.from_torch(t)
    assert isinstance(c, nn.Sequential)
    assert [n for n, _ in c.named_children()] == [n for n, _ in t.named_children()]
    assert not c.training
    np.testing.assert_allclose(_forward(c, x64), _forward_torch(t, x64), rtol=1e-12, atol=1e-12)
    ts, cs = t.state_dict(), c.state_dict()
    assert list(cs) == list(ts)
    for k in ts:
        np.testing.assert_array_equal(cs[k], ts[k].detach().numpy())
        assert cs[k].dtype == np.float64


def test_from_torch_copies_the_weights(x64) -> None:
    t = _torch_all_layers().eval()
    c = nn.from_torch(t)
    with torch.no_grad():
        t.conv1.weight.add_(1.0)
    assert not np.array_equal(c.state_dict()["conv1.weight"], t.conv1.weight.detach().numpy())


def test_round_trips_are_identical(x64) -> None:
    t = _torch_all_layers().eval()
    back = nn.to_torch(nn.from_torch(t))
    assert [n for n, _ in back.named_children()] == [n for n, _ in t.named_children()]
    for (k, a), (k2, b) in zip(t.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2
        assert torch.equal(a, b)
    np.testing.assert_array_equal(_forward_torch(back, x64), _forward_torch(t, x64))

    nn.manual_seed(3)
    c = models.toy15(in_channels=4).double().eval()
    again = nn.from_torch(nn.to_torch(c))
    x = x64[:, :, :15, :15]
    np.testing.assert_array_equal(_forward(again, x), _forward(c, x))
    np.testing.assert_allclose(_forward_torch(nn.to_torch(c), x), _forward(c, x), rtol=1e-12)


def test_float32_models_and_training_mode_convert() -> None:
    t = _torch_all_layers(torch.float32).train()
    c = nn.from_torch(t)
    assert c.training and c.state_dict()["fc1.weight"].dtype == np.float32
    back = nn.to_torch(c.eval())
    assert not back.training and back.fc1.weight.dtype == torch.float32


def test_mixed_training_modes_are_kept_per_layer() -> None:
    t = _torch_all_layers().train()
    t.drop.eval()
    c = nn.from_torch(t)
    assert c.training and not c.drop.training and c.conv1.training
    back = nn.to_torch(c)
    assert back.training and not back.drop.training and back.conv1.training


def test_gradients_after_from_torch_match_autograd(x64) -> None:
    t = _torch_all_layers().eval()
    c = nn.from_torch(t)
    dy = np.random.default_rng(2).standard_normal((2, 5))
    xt = torch.from_numpy(x64).requires_grad_(True)
    (t(xt) * torch.from_numpy(dy)).sum().backward()
    c(x64)
    dx = c.backward(dy)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in c.named_parameters():
        want = dict(t.named_parameters())[name].grad.numpy()
        np.testing.assert_allclose(p.grad, want, rtol=1e-10, atol=1e-12, err_msg=name)


def test_module_dict_and_numbered_sequentials_keep_their_names() -> None:
    md = tnn.ModuleDict(OrderedDict(conv=tnn.Conv2d(1, 2, 3), act=tnn.ReLU()))
    c = nn.from_torch(md)
    assert [n for n, _ in c.named_children()] == ["conv", "act"]
    assert list(c.state_dict()) == ["conv.weight", "conv.bias"]
    seq = nn.from_torch(tnn.Sequential(tnn.Conv2d(1, 2, 3), tnn.Sequential(tnn.ReLU())))
    assert [n for n, _ in seq.named_modules()][1:] == ["0", "1", "1.0"]


def _torch_patch_scan(t: tnn.Module, x: np.ndarray, patch: int) -> np.ndarray:
    """Every pixel's patch (the pixel convention: (P-1)//2 zeros before, P//2 after) through the
    torch classifier: (N, K, H, W)."""
    n, c, h, w = x.shape
    xt = torch.nn.functional.pad(
        torch.from_numpy(x), ((patch - 1) // 2, patch // 2, (patch - 1) // 2, patch // 2)
    )
    cols = torch.nn.functional.unfold(xt, patch)  # (N, C*P*P, H*W), row-major pixel order
    patches = cols.transpose(1, 2).reshape(n * h * w, c, patch, patch)
    with torch.no_grad():
        scores = t(patches).reshape(n, h, w, -1)
    return scores.permute(0, 3, 1, 2).numpy()


@pytest.mark.parametrize("method", ["dsparse", "fcn", "patchwise"])
def test_a_torch_classifier_runs_through_dense_predict_like_torch_patch_scanning(method) -> None:
    torch.manual_seed(0)
    t = tnn.Sequential(
        OrderedDict(
            conv1=tnn.Conv2d(3, 8, 3),
            relu1=tnn.ReLU(),
            pool1=tnn.MaxPool2d(2),
            conv2=tnn.Conv2d(8, 8, 2, stride=2),
            tanh2=tnn.Tanh(),
            pool2=tnn.AvgPool2d(2),
            flatten=tnn.Flatten(),
            fc3=tnn.Linear(8 * 1 * 1, 6),
            relu3=tnn.ReLU(),
            fc4=tnn.Linear(6, 3),
            softmax=tnn.Softmax(dim=1),
        )
    ).double()
    t.eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 13, 11))
    want = _torch_patch_scan(t, x, 12)  # an even patch: the convention's asymmetric padding
    got = dense.predict(nn.from_torch(t), x, 12, method=method)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def _classifier_with_every_dense_layer() -> nn.Sequential:
    nn.manual_seed(5)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(8, 8, 2, groups=2),
            maxout=nn.ChannelMaxPool(2),
            pool2=nn.AvgPool2d(2),
            drop=nn.Dropout(0.5),
            flatten=nn.Flatten(),
            fc3=nn.Linear(4 * 2 * 2, 6),
            tanh3=nn.Tanh(),
            fc4=nn.Linear(6, 2),
            out=nn.LogSoftmax(),
        )
    ).double()


@pytest.mark.parametrize(
    "build, patch",
    [(_classifier_with_every_dense_layer, 14), (lambda: models.toy15().double(), None)],
    ids=["dilated-avgpool-maxout-linear", "toy15"],
)
def test_to_torch_of_to_dense_equals_dense_predict(build, patch) -> None:
    m = build().eval()
    x = np.random.default_rng(4).standard_normal((2, 3, 19, 16))
    net = nn.to_torch(dense.to_dense(m, patch))
    got = _forward_torch(net, x)
    np.testing.assert_allclose(got, dense.predict(m, x, patch), rtol=1e-10, atol=1e-12)
    scan = dense.predict(m, x, patch, method="patchwise")  # the classifier on every patch
    np.testing.assert_allclose(got, scan, rtol=1e-10, atol=1e-12)
    # the dilated pools are torch layers (AvgPool2d has no dilation: DilatedAvgPool2d)
    kinds = {type(layer).__name__ for layer in net}
    assert "ZeroPad2d" in kinds and "Conv2d" in kinds


def test_to_torch_of_to_dense_float32_matches_patch_scanning() -> None:
    m = models.toy15().eval()
    x = np.random.default_rng(6).random((1, 3, 24, 20), dtype=np.float32)
    net = nn.to_torch(dense.to_dense(m))
    want = dense.predict(m, x, method="patchwise")
    np.testing.assert_allclose(_forward_torch(net, x), want, rtol=1e-4, atol=1e-5)


def test_to_torch_of_to_fcn_equals_the_fcn_forward() -> None:
    m = _classifier_with_every_dense_layer().eval()
    x = np.random.default_rng(7).standard_normal((1, 3, 21, 18))
    fcn = dense.to_fcn(m, 14)
    np.testing.assert_allclose(
        _forward_torch(nn.to_torch(fcn), x), _forward(fcn, x), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize(
    "layer, name",
    [
        (tnn.BatchNorm2d(3), "BatchNorm2d"),
        (tnn.GELU(), "GELU"),
        (tnn.Dropout2d(), "Dropout2d"),
        (tnn.Conv1d(3, 3, 2), "Conv1d"),
        (tnn.AdaptiveAvgPool2d(2), "AdaptiveAvgPool2d"),
    ],
)
def test_from_torch_refuses_other_layers_by_name(layer, name) -> None:
    t = tnn.Sequential(OrderedDict(conv=tnn.Conv2d(3, 3, 1), odd=layer))
    with pytest.raises(TypeError, match=rf"layer 'odd' \({name}\) is not supported"):
        nn.from_torch(t)


@pytest.mark.parametrize(
    "layer, match",
    [
        (tnn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
        (tnn.Conv2d(3, 3, 2, padding="same"), "padding='same'"),
        (tnn.MaxPool2d(2, ceil_mode=True), "ceil_mode"),
        (tnn.MaxPool2d(2, return_indices=True), "return_indices"),
        (tnn.AvgPool2d(2, divisor_override=3), "divisor_override"),
        (tnn.Flatten(0), "start_dim"),
        (tnn.Softmax(), "dim=None"),
    ],
)
def test_from_torch_refuses_settings_it_cannot_express(layer, match) -> None:
    with pytest.raises(ValueError, match=rf"layer 'bad' \({type(layer).__name__}\).*{match}"):
        nn.from_torch(tnn.Sequential(OrderedDict(bad=layer)))


def test_from_torch_refuses_half_precision_and_non_modules() -> None:
    with pytest.raises(TypeError, match="float16"):
        nn.from_torch(tnn.Linear(2, 2).half())
    with pytest.raises(TypeError, match="torch.nn.Module"):
        nn.from_torch(nn.ReLU())


@pytest.mark.parametrize(
    "layer, name",
    [
        (nn.LocalContrastNorm(), "LocalContrastNorm"),
        (nn.Concat(nn.ReLU(), nn.Tanh()), "Concat"),
    ],
)
def test_to_torch_refuses_other_layers_by_name(layer, name) -> None:
    with pytest.raises(TypeError, match=rf"layer 'odd' \({name}\) is not supported"):
        nn.to_torch(nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 3, 1), odd=layer)))
    with pytest.raises(TypeError, match="cnncore.nn.Module"):
        nn.to_torch(tnn.ReLU())
