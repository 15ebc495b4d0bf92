"""pixel65's d-sparse pass layer by layer: ours, PyTorch and ONNX Runtime, in interleaved rounds.

``python -m bench.dense_layers [--size 256 512] [--rounds 5] [--threads 2]`` prints, per image
size, the median and the minimum of each step over the rounds:

- ours: the input window and each module of ``DenseNet`` as ``Sequential.forward`` runs it (a
  convolution followed by a ReLU as one fused step), with the algorithm "auto" picks for each
  convolution; then the whole ``dense.predict`` call, whose excess over the sum of the steps is
  the time spent outside the layers;
- PyTorch: the same network as PyTorch ops (``bench.dense_peers.torch_dense``), op by op;
- ONNX Runtime: the node times of its own profiler (``SessionOptions.enable_profiling``) for the
  graph as it runs it (after its fusions and layout changes), and the whole ``run`` call.

Whole passes are also reported in CPU seconds of the process (user + system, ``getrusage``), which
moves far less than wall time on a shared machine, with the system part (mostly the page faults of
fresh output arrays).  The load average is printed before and after.  Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from bench import dense_peers


def _cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_stime


def _timed(record: Callable[[str, float], None], name: str, f: Callable[[], Any]) -> Any:
    t = time.perf_counter()
    out = f()
    record(name, time.perf_counter() - t)
    return out


def ours_steps(
    net: Any, x: np.ndarray, record: Callable[[str, float], None], algorithms: dict | None = None
) -> np.ndarray:
    """One pass of ``net`` (a ``DenseNet``) on image ``x``, each step timed as ``run_chain``
    groups it (conv + ReLU fused); ``algorithms``, if given, receives the algorithm "auto" runs
    for each convolution, by layer name."""
    from cnncore.dense.layers import SharedConv
    from cnncore.dense.tiling import block_ranges, window
    from cnncore.functional.conv_selection import conv_algorithm
    from cnncore.nn import ReLU, no_grad

    rows, cols = block_ranges((int(x.shape[2]), int(x.shape[3])), net.plan.halo("dsparse"))
    mods = list(net.named_children())
    with no_grad():
        h = _timed(record, "window (input padding)", lambda: window(x, rows, cols))
        i = 0
        while i < len(mods):
            name, m = mods[i]
            nxt = mods[i + 1][1] if i + 1 < len(mods) else None
            if isinstance(m, SharedConv) and algorithms is not None:
                algorithms[name] = conv_algorithm(
                    h.shape, m.shape, m.stride, 0, m.dilation, m.groups, h.dtype
                )
            if type(nxt) is ReLU and hasattr(m, "forward_relu"):
                h = _timed(record, f"{name}+relu", lambda m=m, h=h: m.forward_relu(h))
                i += 2
            else:
                h = _timed(record, name, lambda m=m, h=h: m(h))
                i += 1
    return h


def torch_steps(torch: Any, plan: Any, x: Any, record: Callable[[str, float], None]) -> Any:
    """One pass of the PyTorch twin, op by op (the same ops as ``dense_peers.torch_dense``)."""
    F = torch.nn.functional
    (top, bottom), (left, right) = plan.halo("dsparse")
    weighted = {st.name: st for st in plan.dense_stages if st.kind in ("conv", "linear")}
    with torch.inference_mode():
        h = _timed(record, "pad", lambda: F.pad(x, (left, right, top, bottom)))
        for st in plan.dense_stages:
            d = st.dense_dilation
            if st.name in weighted:
                w = torch.from_numpy(np.ascontiguousarray(st.module.weight.data))
                w = w.reshape(st.weight_shape)
                b = None if st.module.bias is None else torch.from_numpy(st.module.bias.data)
                h = _timed(record, st.name, lambda h=h, w=w, b=b, d=d: F.conv2d(h, w, b, 1, 0, d))
            elif st.kind == "maxpool":
                h = _timed(
                    record, st.name, lambda h=h, st=st, d=d: F.max_pool2d(h, st.kernel, 1, 0, d)
                )
            else:
                h = _timed(record, st.name, lambda h=h: F.relu(h, inplace=True))
    return h


def onnx_node_times(profile_file: str, skip: int) -> dict[str, list[float]]:
    """Seconds per node of an ONNX Runtime profile, the first ``skip`` runs left out."""
    with open(profile_file) as f:
        events = json.load(f)
    per: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            per[f"{node} ({e['args'].get('op_name')})"].append(e["dur"] / 1e6)
    return {k: v[skip:] for k, v in per.items()}


def measure(size: int, rounds: int, threads: int) -> None:
    import onnxruntime as ort
    import torch

    from cnncore import dense, models
    from cnncore.dense.convert import analyze
    from cnncore.dense.dsparse import DenseNet

    torch.set_num_threads(threads)
    model = models.pixel65().eval()
    plan = analyze(model, 65)
    net = DenseNet(plan).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    xt = torch.from_numpy(x)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.gettempdir(), "dense_layers_ort")
    sess = ort.InferenceSession(
        dense_peers.onnx_model(plan), opts, providers=["CPUExecutionProvider"]
    )
    torch_net = dense_peers.torch_dense(torch, plan, inplace=True)

    def torch_pass() -> Any:
        with torch.inference_mode():
            return torch_net(xt)

    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    algs: dict[str, str] = {}

    def recorder(who: str) -> Callable[[str, float], None]:
        return lambda name, t: times[(who, name)].append(t)

    def whole(who: str, f: Callable[[], Any]) -> None:
        c0, s0 = _cpu()
        _timed(recorder(who), "whole pass (wall)", f)
        c1, s1 = _cpu()
        times[(who, "whole pass (CPU)")].append(c1 - c0)
        times[(who, "  of which system")].append(s1 - s0)

    steps = (
        lambda: ours_steps(net, x, recorder("ours"), algs),
        lambda: torch_steps(torch, plan, xt, recorder("torch")),
        lambda: whole("ours", lambda: dense.predict(model, x, 65)),
        lambda: whole("torch", torch_pass),
        lambda: whole("ort", lambda: sess.run(["scores"], {"x": x})),
    )
    for f in steps:  # warm-up
        f()
    times.clear()
    load0 = os.getloadavg()
    for _ in range(rounds):
        for f in steps:
            f()
    load1 = os.getloadavg()
    profile = sess.end_profiling()
    node = onnx_node_times(profile, skip=1)
    os.remove(profile)
    print(
        f"\n{size}x{size}, {rounds} rounds, {threads} threads; load average "
        f"{load0[0]:.1f} before, {load1[0]:.1f} after"
    )
    for who in ("ours", "torch", "ort"):
        rows = [(n, v) for (w, n), v in times.items() if w == who]
        if who == "ort":
            rows = list(node.items()) + rows
        parts = 0.0
        for name, v in rows:
            med = statistics.median(v)
            alg = algs.get(name.split("+")[0], "") if who == "ours" else ""
            print(f"  {who:5s} {name:28s} {med * 1e3:9.1f} ms  (min {min(v) * 1e3:8.1f})  {alg}")
            if not name.startswith(("whole", "  of")):
                parts += med
        whole_wall = statistics.median(times[(who, "whole pass (wall)")])
        print(
            f"  {who:5s} {'sum of the steps':28s} {parts * 1e3:9.1f} ms; whole pass minus "
            f"steps {(whole_wall - parts) * 1e3:+.1f} ms"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs="+", default=[256, 512])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    for size in a.size:
        measure(size, a.rounds, a.threads)


if __name__ == "__main__":
    main()
