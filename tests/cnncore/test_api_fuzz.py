"""Generated API fuzzing: every public function of ``cnncore.functional``, every layer constructor
and every layer's forward/backward, called with one argument made invalid (wrong type, dtype,
ndim, size or shape, huge or negative integers, NaN or infinite reals, a GPU array beside CPU
ones).  Each call must raise ``TypeError`` or ``ValueError``: never another exception, never a
crash, never a result.

Every case starts from a valid call (checked to succeed) and breaks exactly one argument with a
value that is invalid for that argument whatever the others are.  The number of generated cases
is counted and checked (``test_fuzz_ran_enough_cases``); run with ``-s`` to print it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnncore.functional as F
from cnncore import nn
from tests.cnncore.layers import every_layer

COUNT = {"functions": 0, "constructors": 0, "modules": 0}
FUZZ = settings(
    max_examples=700,
    deadline=None,
    derandomize=True,  # the same cases on every run (CI)
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


class FakeGPUArray:
    """Something that claims to live on a CUDA device (float32, by its interface)."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = len(self.shape)
        self.__cuda_array_interface__ = {
            "shape": self.shape,
            "typestr": "<f4",
            "data": (0, False),
            "version": 3,
        }


# -- invalid values, by kind of argument -----------------------------------------------------------
HUGE = [2**63, 2**64 + 1, -(2**63) - 1, 10**30, -(10**30), np.uint64(2**63), 2**200]
NOT_INT = [True, np.bool_(False), 2.0, 1.5, "3", b"3", None, 3j, object(), float("nan")]
POS_INT = [0, -1, -(2**70), np.int64(-5), *HUGE, *NOT_INT, (1, 2, 3), (2, 2**63), (2,), [], (2, 0)]
POS_INT_OR_NONE = [v for v in POS_INT if v is not None]  # stride=None means "the kernel size"
NONNEG_INT = [-1, -(2**63), *HUGE, *NOT_INT, (0, 0, 0), (0, -1), (1, 2**64)]
SCALAR_POS_INT = [v for v in POS_INT if not isinstance(v, (tuple, list))] + [(3, 3)]
AXIS = [2**63, -(2**63) - 1, 99, -99, 1.0, True, "1", None, np.uint64(2**64 - 1)]
BAD_REAL = [float("nan"), float("inf"), -float("inf"), "1.0", None, 1j, True, [1.0], object()]
POS_REAL = [0, 0.0, -1.0, -1e-300, *BAD_REAL]
NONNEG_REAL = [-1.0, -1e-300, *BAD_REAL]
PROB = [-0.1, 1.0000001, 2, *BAD_REAL]
KEY = [-1, 2**64, 2**70, 1.5, True, None, "k"]
IGNORE = [2**63, -(2**63) - 1, 1.5, True, None, "x"]
DIVISOR = ["median", "MEAN", "", 3, None, b"mean"]
BOOL = ["yes", 1, 0, None, 1.0]
SHAPE4 = [(2, 4, 7), (2, 4, 7, 6, 1), (0, 4, 7, 6), (2, -4, 7, 6), (2, 4, 2**63, 6), "abcd", None]
SHAPE4 += [5, (2.0, 4, 7, 6), (True, 4, 7, 6), (2, 4, 7, 2**200)]
SHAPE3 = [(4, 7), (4, 7, 6, 1), (0, 7, 6), (4, -7, 6), (2**63, 7, 6), "abc", None, 5]
BAD_DTYPES = [np.int32, np.int64, np.float16, np.complex64, np.bool_, ">f4", ">f8", "U3", object]
NOT_ARRAYS = [None, "abc", {"a": 1}, [["a", "b"]], object(), 3j]


def array_corruptions(a, *, fixed_shape, any_ndim=False, int_array=False, optional=False):
    """Invalid replacements of the array ``a`` (``optional``: None is valid there)."""
    out = [v for v in NOT_ARRAYS if not (optional and v is None)]
    int_bad = [np.float32, np.float64, np.float16, np.complex64, "U3", object]
    dtypes = int_bad if int_array else BAD_DTYPES
    for dt in dtypes:
        out.append(np.zeros(a.shape, dtype=dt) if dt != "U3" else np.full(a.shape, "x"))
    if not any_ndim:
        out += [a[..., None], a.reshape(-1)[: a.shape[-1]] if a.ndim > 1 else a[None, None]]
    out.append(np.zeros((*a.shape[:-1], 0), dtype=a.dtype))  # empty
    if fixed_shape:
        out.append(np.zeros((*a.shape[:-1], a.shape[-1] + 1), dtype=a.dtype))
        out.append(np.zeros((a.shape[0] + 1, *a.shape[1:]), dtype=a.dtype))
    return out


# -- valid calls: name -> (function, arguments, {argument: invalid values}) ------------------------
rng = np.random.default_rng(0)
X = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)
W = rng.standard_normal((6, 4, 3, 2)).astype(np.float32)
B = rng.standard_normal(6).astype(np.float32)
DY_CONV = np.ones((2, 6, 5, 5), np.float32)
Y_POOL, I_POOL = F.max_pool2d(X, 2)
Y_CMP, I_CMP = F.channel_max_pool(X, 2)
S2 = rng.standard_normal((5, 3)).astype(np.float32)
T2 = np.array([0, 2, 1, 1, 0])
XL = rng.standard_normal((5, 8)).astype(np.float32)
WL = rng.standard_normal((3, 8)).astype(np.float32)
COL = F.im2col(X[0], 3)


def _x(fixed=False, channels_fixed=False):
    """Corruptions of X; ``channels_fixed`` adds a channel-count mismatch."""
    bad = array_corruptions(X, fixed_shape=fixed)
    if channels_fixed:
        bad.append(np.zeros((2, 5, 7, 6), np.float32))
    return bad


def _gpu(shape):
    return [FakeGPUArray(shape)]


WINDOW = dict(kernel_size=POS_INT, stride=POS_INT_OR_NONE, padding=NONNEG_INT, dilation=POS_INT)
CONV_GEOM = dict(stride=POS_INT, padding=NONNEG_INT, dilation=POS_INT, groups=SCALAR_POS_INT)
# "winograd" does not apply to W's 3x2 kernel: refused like an unknown name
ALGORITHM = ["fft", "", "Auto", None, 3, b"auto", ("auto",), "winograd"]
LRN = dict(size=SCALAR_POS_INT, alpha=NONNEG_REAL, beta=BAD_REAL, k=POS_REAL)
LCN = dict(size=SCALAR_POS_INT, sigma=POS_REAL, threshold=POS_REAL, divisor=DIVISOR)

CALLS = {
    "conv2d": (
        F.conv2d,
        dict(x=X, weight=W, bias=B, stride=1, padding=0, dilation=1, groups=1, algorithm="auto"),
        dict(
            x=_x(channels_fixed=True) + _gpu(X.shape),
            weight=array_corruptions(W, fixed_shape=False) + [np.zeros((6, 3, 3, 2), "f4")],
            bias=array_corruptions(B, fixed_shape=True, optional=True) + _gpu(B.shape),
            algorithm=ALGORITHM,
            **CONV_GEOM,
        ),
    ),
    "conv2d_backward": (
        F.conv2d_backward,
        dict(
            dy=DY_CONV, x=X, weight=W, stride=1, padding=0, dilation=1, groups=1, algorithm="auto"
        ),
        dict(
            dy=array_corruptions(DY_CONV, fixed_shape=True) + _gpu(DY_CONV.shape),
            x=_x(channels_fixed=True),
            weight=array_corruptions(W, fixed_shape=True),
            algorithm=ALGORITHM,
            **CONV_GEOM,
        ),
    ),
    "conv_algorithm": (
        F.conv_algorithm,
        dict(
            x_shape=X.shape,
            weight_shape=W.shape,
            stride=1,
            padding=0,
            dilation=1,
            groups=1,
            dtype=np.float32,
            backward=False,
        ),
        dict(
            x_shape=[
                (2, 4, 7),
                (2, 5, 7, 6),
                (2, 4, 1, 1),
                (2, 4, -7, 6),
                "x",
                None,
                (2, 4, 7, 2**63),
            ],
            weight_shape=[(6, 4, 3), (6, 3, 3, 2), (0, 4, 3, 2), None, (6, 4, 3.5, 2)],
            dtype=[np.int32, np.float16, "f2", None],
            backward=BOOL,
            **CONV_GEOM,
        ),
    ),
    "set_conv_autotune": (F.set_conv_autotune, dict(enabled=False), dict(enabled=BOOL)),
    "im2col": (
        F.im2col,
        dict(x=X[0], kernel_size=3, stride=1, padding=0, dilation=1),
        dict(x=array_corruptions(X[0], fixed_shape=False) + _gpu(X[0].shape), **WINDOW),
    ),
    "col2im": (
        F.col2im,
        dict(col=COL, input_shape=(4, 7, 6), kernel_size=3, stride=1, padding=0, dilation=1),
        dict(col=array_corruptions(COL, fixed_shape=True), input_shape=SHAPE3, **WINDOW),
    ),
    "max_pool2d": (
        F.max_pool2d,
        dict(x=X, kernel_size=2, stride=None, padding=0, dilation=1),
        dict(x=_x(), **WINDOW),
    ),
    "max_pool2d_values": (
        F.max_pool2d_values,
        dict(x=X, kernel_size=3, stride=2, padding=1, dilation=1),
        dict(x=_x(), **WINDOW),
    ),
    "max_pool2d_backward": (
        F.max_pool2d_backward,
        dict(dy=Y_POOL, indices=I_POOL, input_shape=X.shape),
        dict(
            dy=array_corruptions(Y_POOL, fixed_shape=True),
            indices=array_corruptions(I_POOL, fixed_shape=True, int_array=True)
            + [I_POOL + 100, I_POOL - 100, I_POOL.astype(np.uint64) + 2**63]
            + _gpu(I_POOL.shape),
            input_shape=SHAPE4 + [(2, 4, 1, 1), (3, 4, 7, 6)],
        ),
    ),
    "avg_pool2d": (
        F.avg_pool2d,
        dict(x=X, kernel_size=3, stride=2, padding=1, dilation=1, count_include_pad=True),
        dict(x=_x(), count_include_pad=BOOL, **WINDOW),
    ),
    "avg_pool2d_backward": (
        F.avg_pool2d_backward,
        dict(dy=Y_POOL, input_shape=X.shape, kernel_size=2, stride=None, padding=0, dilation=1),
        dict(dy=array_corruptions(Y_POOL, fixed_shape=True), input_shape=SHAPE4, **WINDOW),
    ),
    "channel_max_pool": (
        F.channel_max_pool,
        dict(x=X, pool_size=2),
        dict(x=_x(), pool_size=SCALAR_POS_INT + [3, 8]),
    ),
    "channel_max_pool_backward": (
        F.channel_max_pool_backward,
        dict(dy=Y_CMP, indices=I_CMP, input_shape=X.shape),
        dict(
            dy=array_corruptions(Y_CMP, fixed_shape=True),
            indices=array_corruptions(I_CMP, fixed_shape=True, int_array=True)
            + [I_CMP + 2, I_CMP - 2, I_CMP[:, ::-1].copy()]
            + _gpu(I_CMP.shape),
            input_shape=SHAPE4 + [(2, 3, 7, 6)],
        ),
    ),
    "global_avg_pool2d": (F.global_avg_pool2d, dict(x=X), dict(x=_x())),
    "global_avg_pool2d_backward": (
        F.global_avg_pool2d_backward,
        dict(dy=X[:, :, :1, :1].copy(), input_shape=X.shape),
        dict(dy=array_corruptions(X[:, :, :1, :1], fixed_shape=True), input_shape=SHAPE4),
    ),
    "relu": (F.relu, dict(x=X), dict(x=array_corruptions(X, fixed_shape=False, any_ndim=True))),
    "relu_backward": (
        F.relu_backward,
        dict(dy=X, x=X),
        dict(dy=_x(fixed=True) + _gpu(X.shape), x=_x(fixed=True) + _gpu(X.shape)),
    ),
    "tanh": (F.tanh, dict(x=X), dict(x=array_corruptions(X, fixed_shape=False, any_ndim=True))),
    "tanh_backward": (
        F.tanh_backward,
        dict(dy=X, y=X),
        dict(dy=_x(fixed=True) + _gpu(X.shape), y=_x(fixed=True)),
    ),
    "softmax": (
        F.softmax,
        dict(x=S2, axis=1),
        dict(x=array_corruptions(S2, fixed_shape=False, any_ndim=True), axis=AXIS),
    ),
    "softmax_backward": (
        F.softmax_backward,
        dict(dy=S2, y=S2, axis=1),
        dict(
            dy=array_corruptions(S2, fixed_shape=True),
            y=array_corruptions(S2, fixed_shape=True),
            axis=AXIS,
        ),
    ),
    "log_softmax": (
        F.log_softmax,
        dict(x=S2, axis=-1),
        dict(x=array_corruptions(S2, fixed_shape=False, any_ndim=True), axis=AXIS),
    ),
    "log_softmax_backward": (
        F.log_softmax_backward,
        dict(dy=S2, y=S2, axis=1),
        dict(dy=array_corruptions(S2, fixed_shape=True) + _gpu(S2.shape), axis=AXIS),
    ),
    "dropout": (
        F.dropout,
        dict(x=X, p=0.5, key=3),
        dict(x=array_corruptions(X, fixed_shape=False, any_ndim=True), p=PROB, key=KEY),
    ),
    "dropout_backward": (
        F.dropout_backward,
        dict(dy=X, p=0.5, key=3),
        dict(dy=array_corruptions(X, fixed_shape=False, any_ndim=True), p=PROB, key=KEY),
    ),
    "linear": (
        F.linear,
        dict(x=XL, weight=WL, bias=B[:3]),
        dict(
            x=array_corruptions(XL, fixed_shape=False) + [np.zeros((5, 9), "f4")] + _gpu(XL.shape),
            weight=array_corruptions(WL, fixed_shape=False) + [np.zeros((3, 7), "f4")],
            bias=array_corruptions(B[:3], fixed_shape=True, optional=True) + _gpu((3,)),
        ),
    ),
    "linear_backward": (
        F.linear_backward,
        dict(dy=S2, x=XL, weight=WL),
        dict(
            dy=array_corruptions(S2, fixed_shape=True) + _gpu(S2.shape),
            x=array_corruptions(XL, fixed_shape=True),
            weight=array_corruptions(WL, fixed_shape=True),
        ),
    ),
    "cross_entropy": (
        F.cross_entropy,
        dict(logits=S2, targets=T2, ignore_index=-100),
        dict(
            logits=array_corruptions(S2, fixed_shape=False) + [np.zeros((5, 3, 2), "f4")],
            targets=array_corruptions(T2, fixed_shape=True, int_array=True)
            + [T2 + 3, T2 - 5, np.array([0, 2**64 - 1, 0, 0, 0], np.uint64)]
            + _gpu(T2.shape),
            ignore_index=IGNORE,
        ),
    ),
    "local_response_norm": (
        F.local_response_norm,
        dict(x=X, size=3, alpha=1e-4, beta=0.75, k=1.0),
        dict(x=_x(), **LRN),
    ),
    "local_response_norm_backward": (
        F.local_response_norm_backward,
        dict(dy=X, x=X, size=3, alpha=1e-4, beta=0.75, k=1.0),
        dict(dy=_x(fixed=True) + _gpu(X.shape), x=_x(fixed=True), **LRN),
    ),
    "local_contrast_norm": (
        F.local_contrast_norm,
        dict(x=X, size=3, sigma=2.0, threshold=1e-4, divisor="mean"),
        dict(x=_x(), **LCN),
    ),
    "local_contrast_norm_backward": (
        F.local_contrast_norm_backward,
        dict(dy=X, x=X, size=3, sigma=2.0, threshold=1e-4, divisor="mean"),
        dict(dy=_x(fixed=True) + _gpu(X.shape), x=_x(fixed=True), **LCN),
    ),
}


NO_ARGUMENTS = {"conv_autotune_enabled", "clear_conv_autotune_cache"}  # nothing to fuzz


def test_every_public_function_is_fuzzed_and_its_valid_call_works():
    public = set(F.__all__) - NO_ARGUMENTS
    assert set(CALLS) == public, set(CALLS) ^ public
    for fn, args, bad in CALLS.values():
        fn(**args)
        assert set(bad) <= set(args)


def _expect_clean_refusal(call, what):
    try:
        call()
    except (TypeError, ValueError):
        return
    except Exception as e:  # noqa: BLE001 - the point: nothing but TypeError/ValueError
        pytest.fail(f"{what} raised {type(e).__name__}: {e}")
    pytest.fail(f"{what} was accepted")


def _describe(v):
    if isinstance(v, np.ndarray):
        return f"array{v.shape} {v.dtype}"
    return repr(v)[:60]


@st.composite
def function_cases(draw):
    name = draw(st.sampled_from(sorted(CALLS)))
    fn, args, bad = CALLS[name]
    arg = draw(st.sampled_from(sorted(bad)))
    value = draw(st.sampled_from(bad[arg]))
    return name, fn, {**args, arg: value}, f"{name}({arg}={_describe(value)})"


@settings(FUZZ, max_examples=1500)
@given(function_cases())
def test_functions_refuse_invalid_arguments(case):
    name, fn, args, what = case
    COUNT["functions"] += 1
    _expect_clean_refusal(lambda: fn(**args), what)


# -- module constructors ---------------------------------------------------------------------------
F32 = np.float32
CONSTRUCTORS = {
    "Conv2d": (
        nn.Conv2d,
        dict(
            in_channels=4,
            out_channels=6,
            kernel_size=3,
            stride=1,
            padding=0,
            dilation=1,
            bias=True,
            dtype=F32,
            groups=1,
        ),
        dict(
            in_channels=SCALAR_POS_INT,
            out_channels=SCALAR_POS_INT,
            kernel_size=POS_INT,
            stride=POS_INT,
            padding=NONNEG_INT,
            dilation=POS_INT,
            bias=BOOL,
            dtype=[np.float16, np.int32, "float128", "nonsense", object, 3, "f4,f4"],
            groups=SCALAR_POS_INT + [4, 5],
        ),
    ),
    "Linear": (
        nn.Linear,
        dict(in_features=8, out_features=3, bias=True, dtype=F32),
        dict(
            in_features=SCALAR_POS_INT,
            out_features=SCALAR_POS_INT,
            bias=BOOL,
            dtype=[np.float16, np.int64, "nonsense", 3, ">f4"],
        ),
    ),
    "MaxPool2d": (
        nn.MaxPool2d,
        dict(kernel_size=3, stride=None, padding=1, dilation=1),
        dict(WINDOW, padding=NONNEG_INT + [2, (1, 2)]),
    ),
    "AvgPool2d": (
        nn.AvgPool2d,
        dict(kernel_size=3, stride=None, padding=1, dilation=1, count_include_pad=True),
        dict(WINDOW, count_include_pad=BOOL),
    ),
    "ChannelMaxPool": (nn.ChannelMaxPool, dict(pool_size=2), dict(pool_size=SCALAR_POS_INT)),
    "LocalResponseNorm": (nn.LocalResponseNorm, dict(size=3, alpha=1e-4, beta=0.75, k=1.0), LRN),
    "LocalContrastNorm": (
        nn.LocalContrastNorm,
        dict(size=9, sigma=2.0, threshold=1e-4, divisor="mean"),
        LCN,
    ),
    "Dropout": (nn.Dropout, dict(p=0.5), dict(p=PROB)),
    "Softmax": (nn.Softmax, dict(dim=1), dict(dim=[1.5, "1", None, True, 2**63, -(2**70)])),
    "LogSoftmax": (nn.LogSoftmax, dict(dim=1), dict(dim=[1.5, "1", None, True, 2**63])),
    "CrossEntropyLoss": (nn.CrossEntropyLoss, dict(ignore_index=-100), dict(ignore_index=IGNORE)),
    "RankingHingeLoss": (nn.RankingHingeLoss, dict(margin=1.0), dict(margin=NONNEG_REAL)),
}


def test_constructors_valid_calls_work():
    for cls, args, bad in CONSTRUCTORS.values():
        cls(**args)
        assert set(bad) <= set(args)


@st.composite
def constructor_cases(draw):
    name = draw(st.sampled_from(sorted(CONSTRUCTORS)))
    cls, args, bad = CONSTRUCTORS[name]
    arg = draw(st.sampled_from(sorted(bad)))
    value = draw(st.sampled_from(bad[arg]))
    return cls, {**args, arg: value}, f"{name}({arg}={_describe(value)})"


@FUZZ
@given(constructor_cases())
def test_constructors_refuse_invalid_hyper_parameters(case):
    cls, args, what = case
    COUNT["constructors"] += 1
    _expect_clean_refusal(lambda: cls(**args), what)


# -- module forward / backward ---------------------------------------------------------------------
LAYERS = every_layer(X)


def _dy_corruptions(y):
    return array_corruptions(y, fixed_shape=True) + _gpu(y.shape) + [y.astype(np.float64)]


@st.composite
def module_cases(draw):
    name = draw(st.sampled_from(sorted(LAYERS)))
    module, x = LAYERS[name]
    where = draw(st.sampled_from(["forward", "backward"]))
    if where == "forward":
        # layers that take any number of axes (or any >= 2): only dtype, type and size are wrong
        any_ndim = name in ("ReLU", "Tanh", "Concat", "Dropout", "Dropout-eval", "Flatten")
        any_ndim = any_ndim or name in ("Softmax", "LogSoftmax")
        bad = array_corruptions(x, fixed_shape=False, any_ndim=any_ndim)
        value = draw(st.sampled_from(bad))
    else:
        value = draw(st.sampled_from(_dy_corruptions(module(x)) + [None]))
    return name, module, x, where, value, f"{name}.{where}({_describe(value)})"


@FUZZ
@given(module_cases())
def test_modules_refuse_invalid_inputs_and_gradients(case):
    name, module, x, where, value, what = case
    COUNT["modules"] += 1
    if where == "forward":
        _expect_clean_refusal(lambda: module(value), what)
    else:
        module(x)
        _expect_clean_refusal(lambda: module.backward(value), what)


def test_load_state_dict_refuses_non_mappings_with_type_error():
    m = nn.Linear(2, 1)
    for bad in ([("weight", np.zeros((1, 2)))], None, "weight", 3, np.zeros(3)):
        with pytest.raises(TypeError, match="mapping"):
            m.load_state_dict(bad)


def test_fuzz_ran_enough_cases():
    """Runs after the fuzz tests in file order; prints the number of generated cases."""
    total = sum(COUNT.values())
    if total == 0:
        pytest.skip("the fuzz tests did not run in this session (selected separately)")
    print(f"\nAPI fuzz: {COUNT} = {total} generated cases")
    assert all(n >= 100 for n in COUNT.values()), COUNT
