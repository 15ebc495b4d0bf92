"""Every public function and module over every valid array layout: read-only, memory-mapped
(``np.load(mmap_mode="r")``), ``np.frombuffer``, Fortran order, negative strides and
non-contiguous views.  Each result must equal the result on C-contiguous inputs bit for bit, and
no input may be written to."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import cnncore.functional as F
from cnncore import dense, nn

# -- layouts ---------------------------------------------------------------------------------------


def read_only(a, tmp):
    a = a.copy()
    a.setflags(write=False)
    return a


def memory_mapped(a, tmp):
    path = tmp / f"a{len(list(tmp.iterdir()))}.npy"
    np.save(path, a)
    return np.load(path, mmap_mode="r")


def from_buffer(a, tmp):
    return np.frombuffer(a.tobytes(), dtype=a.dtype).reshape(a.shape)


def fortran(a, tmp):
    return np.asfortranarray(a)


def negative_stride(a, tmp):
    if a.ndim == 0:
        return a
    return np.ascontiguousarray(a[..., ::-1])[..., ::-1]


def strided(a, tmp):
    if a.ndim == 0:
        return a
    big = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), dtype=a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def read_only_fortran_mmap(a, tmp):
    return memory_mapped(np.asfortranarray(a), tmp)


LAYOUTS = [
    read_only,
    memory_mapped,
    from_buffer,
    fortran,
    negative_stride,
    strided,
    read_only_fortran_mmap,
]


def test_layouts_are_what_they_claim(tmp_path):
    a = np.arange(24.0).reshape(2, 3, 4)
    assert not read_only(a, tmp_path).flags.writeable
    assert isinstance(memory_mapped(a, tmp_path), np.memmap)
    assert not from_buffer(a, tmp_path).flags.writeable
    assert fortran(a, tmp_path).flags.f_contiguous and not fortran(a, tmp_path).flags.c_contiguous
    assert negative_stride(a, tmp_path).strides[-1] < 0
    assert not strided(a, tmp_path).flags.c_contiguous
    for layout in LAYOUTS:
        np.testing.assert_array_equal(layout(a, tmp_path), a)


# -- inputs ----------------------------------------------------------------------------------------
rng = np.random.default_rng(0)
X = rng.standard_normal((2, 4, 7, 6))
W = rng.standard_normal((6, 4, 3, 2))
B = rng.standard_normal(6)
DY_CONV = rng.standard_normal((2, 6, 5, 5))
W_G = rng.standard_normal((6, 2, 3, 2))
Y_POOL, I_POOL = F.max_pool2d(X, 2)
DY_POOL = rng.standard_normal(Y_POOL.shape)
Y_CMP, I_CMP = F.channel_max_pool(X, 2)
DY_CMP = rng.standard_normal(Y_CMP.shape)
DY_GAP = rng.standard_normal((2, 4, 1, 1))
S2 = rng.standard_normal((5, 3))
T2 = np.array([0, 2, 1, 1, 0])
S4 = rng.standard_normal((2, 3, 4, 5))
T4 = rng.integers(0, 3, (2, 4, 5))
XL, WL, DYL = rng.standard_normal((5, 8)), rng.standard_normal((3, 8)), rng.standard_normal((5, 3))
COL = F.im2col(X[0], 3)

# name -> (function, positional arrays, keyword arguments)
CALLS = {
    "conv2d": (F.conv2d, (X, W, B), dict(stride=(2, 1), padding=1)),
    "conv2d-groups": (F.conv2d, (X, W_G, B), dict(groups=2)),
    "conv2d_backward": (F.conv2d_backward, (DY_CONV, X, W), {}),
    "im2col": (F.im2col, (X[0],), dict(kernel_size=3)),
    "col2im": (F.col2im, (COL,), dict(input_shape=(4, 7, 6), kernel_size=3)),
    "max_pool2d": (F.max_pool2d, (X,), dict(kernel_size=2)),
    "max_pool2d_values": (F.max_pool2d_values, (X,), dict(kernel_size=3, stride=2, padding=1)),
    "max_pool2d_backward": (F.max_pool2d_backward, (DY_POOL, I_POOL), dict(input_shape=X.shape)),
    "avg_pool2d": (F.avg_pool2d, (X,), dict(kernel_size=3, stride=2, padding=1)),
    "avg_pool2d_backward": (
        F.avg_pool2d_backward,
        (DY_POOL,),
        dict(input_shape=X.shape, kernel_size=2),
    ),
    "channel_max_pool": (F.channel_max_pool, (X,), dict(pool_size=2)),
    "channel_max_pool_backward": (
        F.channel_max_pool_backward,
        (DY_CMP, I_CMP),
        dict(input_shape=X.shape),
    ),
    "global_avg_pool2d": (F.global_avg_pool2d, (X,), {}),
    "global_avg_pool2d_backward": (
        F.global_avg_pool2d_backward,
        (DY_GAP,),
        dict(input_shape=X.shape),
    ),
    "relu": (F.relu, (X,), {}),
    "relu_backward": (F.relu_backward, (X[::-1].copy(), X), {}),
    "tanh": (F.tanh, (X,), {}),
    "tanh_backward": (F.tanh_backward, (X[::-1].copy(), np.tanh(X)), {}),
    "softmax": (F.softmax, (S4,), {}),
    "softmax_backward": (F.softmax_backward, (S4[::-1].copy(), F.softmax(S4)), {}),
    "log_softmax": (F.log_softmax, (S2,), dict(axis=-1)),
    "log_softmax_backward": (F.log_softmax_backward, (S4[::-1].copy(), F.log_softmax(S4)), {}),
    "dropout": (F.dropout, (X,), dict(p=0.3, key=7)),
    "dropout_backward": (F.dropout_backward, (X,), dict(p=0.3, key=7)),
    "linear": (F.linear, (XL, WL, B[:3]), {}),
    "linear_backward": (F.linear_backward, (DYL, XL, WL), {}),
    "cross_entropy": (F.cross_entropy, (S2, T2), {}),
    "cross_entropy-4d": (F.cross_entropy, (S4, T4), dict(ignore_index=1)),
    "local_response_norm": (F.local_response_norm, (X,), dict(size=3, alpha=0.1)),
    "local_response_norm_backward": (
        F.local_response_norm_backward,
        (X[::-1].copy(), X),
        dict(size=3, alpha=0.1),
    ),
    "local_contrast_norm": (F.local_contrast_norm, (X,), dict(size=3)),
    "local_contrast_norm_backward": (
        F.local_contrast_norm_backward,
        (X[::-1].copy(), X),
        dict(size=4, divisor="fixed"),
    ),
}


def test_every_public_function_is_in_the_matrix():
    covered = {name.split("-")[0] for name in CALLS}
    assert set(F.__all__) == covered, set(F.__all__) ^ covered


def _flat(result):
    if isinstance(result, tuple):
        return [r for r in result if r is not None]
    return [result]


def _assert_same(got, want, what):
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want), what
    for g, w in zip(got, want, strict=True):
        if isinstance(w, float):
            assert g == w or (np.isnan(g) and np.isnan(w)), what
        else:
            assert g.dtype == w.dtype, what
            np.testing.assert_array_equal(g, w, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_functions_on_every_layout(name, layout, dtype, tmp_path):
    fn, arrays, kwargs = CALLS[name]
    arrays = [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]
    want = fn(*arrays, **kwargs)
    views = [layout(a, tmp_path) for a in arrays]
    before = [np.array(v, copy=True) for v in views]
    got = fn(*views, **kwargs)
    _assert_same(got, want, f"{name} on {layout.__name__}")
    for v, b in zip(views, before, strict=True):
        np.testing.assert_array_equal(v, b)  # inputs are never written to


# -- modules ---------------------------------------------------------------------------------------
def _modules():
    nn.manual_seed(3)
    return {
        "Conv2d": (nn.Conv2d(4, 6, 3, stride=2, padding=1, dtype=np.float64), X),
        "MaxPool2d": (nn.MaxPool2d(3, stride=2, padding=1), X),
        "AvgPool2d": (nn.AvgPool2d(2), X),
        "ChannelMaxPool": (nn.ChannelMaxPool(2), X),
        "GlobalAvgPool2d": (nn.GlobalAvgPool2d(), X),
        "LocalResponseNorm": (nn.LocalResponseNorm(3, 0.1, beta=-0.5), X),
        "LocalContrastNorm": (nn.LocalContrastNorm(3), X),
        "ReLU": (nn.ReLU(), X),
        "Tanh": (nn.Tanh(), X),
        "Softmax": (nn.Softmax(dim=1), X),
        "LogSoftmax": (nn.LogSoftmax(dim=-1), S2),
        "Linear": (nn.Linear(8, 3, dtype=np.float64), XL),
        "Flatten": (nn.Flatten(), X),
        "Dropout": (nn.Dropout(0.4, seed=1), X),
        "Sequential": (
            nn.Sequential(
                nn.Conv2d(4, 3, 3, dtype=np.float64),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(3 * 5 * 4, 2, dtype=np.float64),
            ),
            X,
        ),
        "Concat": (nn.Concat(nn.ReLU(), nn.Tanh()), X),
        "Inception": (nn.Inception(4, 1, 1, 2, 1, 1, 1).double(), X),
    }


def test_every_layer_module_is_in_the_matrix():
    layers = {
        n
        for n in nn.__all__
        if isinstance(getattr(nn, n), type) and issubclass(getattr(nn, n), nn.Module)
    }
    losses = {"CrossEntropyLoss", "RankingHingeLoss"}  # below: forward(scores, targets)
    assert layers - losses - {"Module"} == set(_modules())


def _run(module, x, dy):
    import copy

    m = copy.deepcopy(module)
    y = m(x)
    dx = m.backward(dy)
    grads = [p.grad for p in m.parameters()]
    return [y, dx, *grads]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_forward_and_backward_on_every_layout(name, layout, tmp_path):
    module, x = _modules()[name]
    y = module(x)
    dy = np.random.default_rng(5).standard_normal(y.shape).astype(y.dtype)
    module.zero_grad()
    want = _run(module, x, dy)
    xv, dyv = layout(x, tmp_path), layout(dy, tmp_path)
    got = _run(module, xv, dyv)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w, err_msg=f"{name} on {layout.__name__}")
    np.testing.assert_array_equal(xv, x)
    np.testing.assert_array_equal(dyv, dy)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda f: f.__name__)
def test_losses_and_load_state_dict_on_every_layout(layout, tmp_path):
    for loss, scores, targets in [
        (nn.CrossEntropyLoss(), S4, T4),
        (nn.RankingHingeLoss(), S2, T2),
    ]:
        want = (loss(scores, targets), loss.backward())
        got = (loss(layout(scores, tmp_path), layout(targets, tmp_path)), loss.backward())
        assert got[0] == want[0]
        np.testing.assert_array_equal(got[1], want[1])
    src = nn.Linear(8, 3, dtype=np.float64)
    state = OrderedDict((k, layout(a, tmp_path)) for k, a in src.state_dict().items())
    dst = nn.Linear(8, 3, dtype=np.float64)
    dst.load_state_dict(state)
    for k, a in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k], a)
    dst.weight.data[...] = 0  # the loaded parameters are the module's own (writable) copies
    np.testing.assert_array_equal(state["weight"], src.weight.data)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda f: f.__name__)
def test_dense_predict_on_every_layout(layout, tmp_path):
    nn.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, dtype=np.float64),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(3, 2, 2, dtype=np.float64),
        nn.Softmax(dim=1),
    ).eval()
    x = np.random.default_rng(2).standard_normal((1, 2, 9, 11))
    for method in ("dsparse", "fcn", "patchwise"):
        want = dense.predict(model, x, 6, method=method)
        np.testing.assert_array_equal(
            dense.predict(model, layout(x, tmp_path), 6, method=method), want
        )


def test_predict_files_reads_memory_mapped_inputs_without_a_halo(tmp_path):
    pytest.importorskip("dask")
    from cnncore.distributed import predict_files

    nn.manual_seed(0)
    # a 1x1-receptive-field classifier: no halo, so predict sees the memory-mapped file itself
    model = nn.Sequential(nn.Conv2d(3, 2, 1, dtype=np.float64), nn.LogSoftmax(dim=1)).eval()
    (tmp_path / "in").mkdir()
    a = np.random.default_rng(4).standard_normal((3, 8, 9))
    b = np.asfortranarray(np.random.default_rng(5).standard_normal((2, 3, 5, 6)))
    np.save(tmp_path / "in" / "a.npy", a)
    np.save(tmp_path / "in" / "b.npy", b)
    for method in ("dsparse", "fcn", "patchwise"):
        out = predict_files(
            model, tmp_path / "in", tmp_path / method, 1, method=method, overwrite=True
        )
        np.testing.assert_array_equal(np.load(out[0]), dense.predict(model, a[None], 1)[0])
        np.testing.assert_allclose(np.load(out[1]), dense.predict(model, b, 1), rtol=1e-12)
