"""Strong baselines of the dense speedup study, on the same network and weights as ours.

- ``torch_dense``: the d-sparse network as PyTorch ops (``conv2d`` and ``max_pool2d`` with the
  dense dilations, stride 1): the same conversion as ``cnncore.dense``, in PyTorch.
- ``onnx_dense``: that network as an ONNX graph (Pad, Conv and MaxPool with dilations, Relu),
  built with ``onnx.helper`` from the same plan and weights, run by ONNX Runtime CPU with
  ``threads`` intra-op threads: what a user deploying CPU inference would pick.
- ``torch_patch_scanning``: patch scanning in PyTorch: the patch classifier as a
  ``torch.nn.Sequential`` with the same weights, patches gathered in batches (the batch size
  tuned on a probe) and run through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _weighted(plan: Any) -> list[Any]:
    return [st for st in plan.dense_stages if st.kind in ("conv", "linear")]


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def torch_dense(torch: Any, plan: Any, inplace: bool, params: list | None = None) -> Callable:
    """``f(x) -> scores``: the d-sparse network of ``plan`` as PyTorch ops (same weights;
    ``params``: the ``(weight, bias)`` tensors of the conv/linear stages, default: the model's)."""
    F = torch.nn.functional
    weighted = _weighted(plan)
    if params is None:
        params = [
            (
                torch.from_numpy(np.ascontiguousarray(st.module.weight.data)),
                None if st.module.bias is None else torch.from_numpy(st.module.bias.data),
            )
            for st in weighted
        ]
    wb = dict(zip((st.name for st in weighted), params, strict=True))
    ops = []
    for st in plan.dense_stages:
        d = st.dense_dilation
        if st.kind in ("conv", "linear"):
            w, b = wb[st.name]
            ops.append(
                lambda x, w=w, b=b, s=st.weight_shape, d=d: F.conv2d(x, w.reshape(s), b, 1, 0, d)
            )
        elif st.kind == "maxpool":
            ops.append(lambda x, k=st.kernel, d=d: F.max_pool2d(x, k, 1, 0, d))
        elif type(st.module).__name__ == "ReLU":
            ops.append(lambda x: F.relu(x, inplace=inplace))
        else:
            raise NotImplementedError(f"no PyTorch twin for {st.name} ({st.kind})")
    (top, bottom), (left, right) = plan.halo("dsparse")

    def run(x):
        x = F.pad(x, (left, right, top, bottom))
        for op in ops:
            x = op(x)
        return x

    return run


def onnx_model(plan: Any) -> bytes:
    """The d-sparse network of ``plan`` as a serialised ONNX model (opset 17, float32,
    input ``x`` (N, C, H, W) with dynamic N, H, W; output ``scores``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    (top, bottom), (left, right) = plan.halo("dsparse")
    inits = [
        numpy_helper.from_array(np.array([0, 0, top, left, 0, 0, bottom, right], np.int64), "pads")
    ]
    nodes = [helper.make_node("Pad", ["x", "pads"], ["t0"])]
    name, i = "t0", 0
    for st in plan.dense_stages:
        i += 1
        out = f"t{i}"
        d = list(_pair(st.dense_dilation))
        if st.kind in ("conv", "linear"):
            w = np.ascontiguousarray(st.module.weight.data, np.float32).reshape(st.weight_shape)
            inits.append(numpy_helper.from_array(w, f"w{i}"))
            ins = [name, f"w{i}"]
            if st.module.bias is not None:
                inits.append(
                    numpy_helper.from_array(st.module.bias.data.astype(np.float32), f"b{i}")
                )
                ins.append(f"b{i}")
            nodes.append(helper.make_node("Conv", ins, [out], dilations=d, strides=[1, 1]))
        elif st.kind == "maxpool":
            k = list(_pair(st.kernel))
            nodes.append(
                helper.make_node(
                    "MaxPool", [name], [out], kernel_shape=k, dilations=d, strides=[1, 1]
                )
            )
        elif type(st.module).__name__ == "ReLU":
            nodes.append(helper.make_node("Relu", [name], [out]))
        else:
            raise NotImplementedError(f"no ONNX twin for {st.name} ({st.kind})")
        name = out
    nodes.append(helper.make_node("Identity", [name], ["scores"]))
    c_in = int(_weighted(plan)[0].weight_shape[1])
    graph = helper.make_graph(
        nodes,
        "dsparse",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c_in, "H", "W"])],
        [
            helper.make_tensor_value_info(
                "scores", TensorProto.FLOAT, ["N", plan.num_classes, "H", "W"]
            )
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_session(plan: Any, threads: int) -> Any:
    """An ONNX Runtime CPU session of the d-sparse network, ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx_model(plan), opts, providers=["CPUExecutionProvider"])


def onnx_dense(plan: Any, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """``f(x) -> scores`` through ONNX Runtime (inference only)."""
    sess = onnx_session(plan, threads)
    return lambda x: sess.run(["scores"], {"x": x})[0]


# -- patch scanning in PyTorch ------------------------------------------------------------------
def torch_classifier(torch: Any, model: Any) -> Any:
    """The cnncore patch classifier as ``torch.nn.Sequential`` with the same weights (eval mode)."""
    tnn = torch.nn
    layers = []
    for m in model.children():
        kind = type(m).__name__
        if kind == "Conv2d":
            t = tnn.Conv2d(
                m.in_channels,
                m.out_channels,
                m.kernel_size,
                m.stride,
                m.padding,
                m.dilation,
                groups=getattr(m, "groups", 1),
                bias=m.bias is not None,
            )
        elif kind == "Linear":
            t = tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        elif kind == "ReLU":
            t = tnn.ReLU()
        elif kind == "MaxPool2d":
            t = tnn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation)
        elif kind == "Flatten":
            t = tnn.Flatten()
        elif kind == "Dropout":
            t = tnn.Dropout(m.p)
        else:
            raise NotImplementedError(f"no PyTorch twin for {kind}")
        if hasattr(m, "weight"):
            with torch.no_grad():
                t.weight.copy_(torch.from_numpy(np.asarray(m.weight.data)))
                if m.bias is not None:
                    t.bias.copy_(torch.from_numpy(np.asarray(m.bias.data)))
        layers.append(t)
    return tnn.Sequential(*layers).eval()


def torch_patch_scanning(
    torch: Any, model: Any, plan: Any, x: np.ndarray, pixels: np.ndarray, pss: str, batch: int
) -> Callable[[], None]:
    """``run()``: the patches of ``pixels`` (flat indices into N*H*W) through the PyTorch twin of
    the classifier in batches of ``batch``; ``pss="backward"`` adds a backward of the scores' sum
    after each batch (the gradient reaching every parameter)."""
    from numpy.lib.stride_tricks import sliding_window_view

    from cnncore.dense.tiling import block_ranges, window

    net = torch_classifier(torch, model)
    hw = (int(x.shape[2]), int(x.shape[3]))
    block = window(x, *block_ranges(hw, plan.halo("patchwise")))
    win = sliding_window_view(block, plan.patch, axis=(2, 3))

    def run():
        for start in range(0, pixels.size, batch):
            n, rest = np.divmod(pixels[start : start + batch], hw[0] * hw[1])
            i, j = np.divmod(rest, hw[1])
            xb = torch.from_numpy(np.ascontiguousarray(win[n, :, i, j]))
            if pss == "forward":
                with torch.inference_mode():
                    net(xb)
            else:
                net.zero_grad(set_to_none=False)
                net(xb).sum().backward()

    return run


def tune_batch(
    torch: Any, model: Any, plan: Any, x: np.ndarray, pss: str, candidates=(32, 128, 512)
) -> int:
    """The batch size of PyTorch patch scanning with the least time per patch, measured on one
    batch of each candidate (after one warm-up)."""
    best, best_t = candidates[0], float("inf")
    n_pix = x.shape[0] * x.shape[2] * x.shape[3]
    rng = np.random.default_rng(3)
    for b in candidates:
        px = np.sort(rng.choice(n_pix, size=min(b, n_pix), replace=False))
        run = torch_patch_scanning(torch, model, plan, x, px, pss, b)
        run()
        t0 = time.perf_counter()
        run()
        t = (time.perf_counter() - t0) / px.size
        if t < best_t:
            best, best_t = b, t
        if px.size < b:
            break
    return best
