"""The dense methods of the speedup study as prepared callables: ours and the peers.

Every maker returns ``(run, scale, info)``: ``run()`` does the timed work, ``scale`` turns its
seconds into seconds for the whole image (patch scanning and FCN may time a sample), ``info`` says
what was timed.  Methods, per network, image size and pass ("forward": the scores of every pixel;
"backward": forward and backward of a training step with every pixel counted, the gradient of the
scores' sum reaching every Parameter):

- ours: ``patchwise`` (patch scanning, ``cnncore.dense.patchwise``), ``fcn`` (shift and stitch),
  ``dsparse`` (the d-regularly sparse network);
- peers (``bench.dense_peers``): ``torch_patchwise`` (patch scanning in PyTorch, batch tuned),
  ``torch_dsparse`` (the d-sparse network as PyTorch ops), ``onnx_dsparse`` (that network in ONNX
  Runtime CPU, forward only).  The PyTorch ones run in the peer process (``bench.peer``) from a
  picklable specification: network name, weights, image size and seed, so both sides see the same
  network, weights and image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

OURS = ("patchwise", "fcn", "dsparse")
TORCH = ("torch_patchwise", "torch_dsparse")
ONNX = ("onnx_dsparse",)
# the method whose operation count a peer performs (for the theoretical ratio)
COST_METHOD = {
    "torch_patchwise": "patchwise",
    "torch_dsparse": "dsparse",
    "onnx_dsparse": "dsparse",
}
LABEL = {
    "patchwise": "patch scanning",
    "fcn": "FCN",
    "dsparse": "d-sparse",
    "torch_patchwise": "PyTorch patch scanning",
    "torch_dsparse": "PyTorch d-sparse",
    "onnx_dsparse": "ONNX Runtime d-sparse",
}


def image(batch: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 3, size, size), dtype=np.float32)


def model_from_spec(spec: dict[str, Any]) -> Any:
    from bench import networks

    model = networks.build(spec["network"])
    model.load_state_dict(spec["state"])
    return model.eval()


def shift_sample(S: tuple[int, int], hw: tuple[int, int], k: int) -> list[tuple[int, int]]:
    shifts = [(a, b) for a in range(min(S[0], hw[0])) for b in range(min(S[1], hw[1]))]
    if len(shifts) <= k:
        return shifts
    pick = np.linspace(0, len(shifts) - 1, k).round().astype(int)
    return [shifts[i] for i in pick]


def dsparse(model: Any, P: int, x: np.ndarray, pss: str) -> tuple:
    from cnncore.dense import predict, to_dense

    if pss == "forward":
        return (lambda: predict(model, x, P, "dsparse")), 1.0, {}
    net = to_dense(model, P)
    dy = np.ones((x.shape[0], net.plan.num_classes) + x.shape[2:], x.dtype)

    def step():  # training: no gradient for the images (nor in the peers' backward)
        net.forward(x)
        net.backward_params(dy)
        model.zero_grad()

    return step, 1.0, {}


def fcn(model: Any, P: int, x: np.ndarray, pss: str, max_shifts: int) -> tuple:
    """Shift and stitch; when S*S exceeds ``max_shifts`` an evenly spread sample of the passes is
    timed and scaled to all of them (``timed_passes`` < ``passes``)."""
    from cnncore.dense import predict, to_fcn
    from cnncore.dense.tiling import block_ranges, window
    from cnncore.nn import Sequential, no_grad

    net = to_fcn(model, P)
    hw = (int(x.shape[2]), int(x.shape[3]))
    block = window(x, *block_ranges(hw, net.plan.halo("fcn")))
    n_all = min(net.plan.stride[0], hw[0]) * min(net.plan.stride[1], hw[1])
    shifts = shift_sample(net.plan.stride, hw, max_shifts)
    info = {"timed_passes": len(shifts), "passes": n_all}
    if pss == "forward" and len(shifts) == n_all:
        return (lambda: predict(model, x, P, "fcn")), 1.0, info
    if pss == "forward":

        def passes():
            with no_grad():
                for a, b in shifts:
                    net.forward_valid(block[:, :, a:, b:])

        return passes, n_all / len(shifts), info
    dblock = np.zeros_like(block)

    def passes_backward():
        for a, b in shifts:
            y = net.forward_valid(block[:, :, a:, b:])
            dblock[:, :, a:, b:] += Sequential.backward(net, np.ones_like(y))
        model.zero_grad()

    return passes_backward, n_all / len(shifts), info


def patchwise(model: Any, plan: Any, x: np.ndarray, pss: str, pixels: np.ndarray, bs: int):
    """Our patch scanning of ``pixels`` (flat indices into N*H*W) in batches of ``bs``."""
    from numpy.lib.stride_tricks import sliding_window_view

    from cnncore.dense.patchwise import scan_patches
    from cnncore.dense.tiling import block_ranges, window
    from cnncore.nn import no_grad

    hw = (int(x.shape[2]), int(x.shape[3]))
    block = window(x, *block_ranges(hw, plan.halo("patchwise")))
    win = sliding_window_view(block, plan.patch, axis=(2, 3))
    n_pix = x.shape[0] * hw[0] * hw[1]
    info = {"timed_pixels": int(pixels.size), "pixels": int(n_pix), "batch_size": int(bs)}

    def forward():
        with no_grad():
            scan_patches(model, block, hw, plan, bs, pixels)

    def backward():  # the batches of scan_patches, each with a backward of the scores' sum
        for start in range(0, pixels.size, bs):
            n, rest = np.divmod(pixels[start : start + bs], hw[0] * hw[1])
            i, j = np.divmod(rest, hw[1])
            s = model(win[n, :, i, j])
            model.backward(np.ones_like(s))
        model.zero_grad()

    return (forward if pss == "forward" else backward), n_pix / pixels.size, info


def onnx_dsparse(plan: Any, x: np.ndarray, threads: int) -> tuple:
    from bench.dense_peers import onnx_dense

    f = onnx_dense(plan, threads)
    return (lambda: f(x)), 1.0, {"intra_op_threads": threads}


def torch_dsparse(torch: Any, plan: Any, x: np.ndarray, pss: str) -> Any:
    """The d-sparse network as PyTorch ops (``bench.dense_peers.torch_dense``) on ``x``: the
    forward under ``inference_mode``, or the forward and the gradient of the scores' sum with
    respect to every weight and bias."""
    from bench import dense_peers

    tx = torch.from_numpy(x)
    if pss == "forward":
        f = dense_peers.torch_dense(torch, plan, inplace=True)

        def run():
            with torch.inference_mode():
                f(tx)

        return run
    pairs = [
        (
            torch.from_numpy(np.array(st.module.weight.data)).requires_grad_(True),
            None
            if st.module.bias is None
            else torch.from_numpy(np.array(st.module.bias.data)).requires_grad_(True),
        )
        for st in plan.dense_stages
        if st.kind in ("conv", "linear")
    ]
    leaves = [t for pair in pairs for t in pair if t is not None]
    f = dense_peers.torch_dense(torch, plan, inplace=False, params=pairs)
    dy = torch.ones((x.shape[0], plan.num_classes, *x.shape[2:]))

    def step():
        torch.autograd.grad(f(tx), leaves, dy)

    return step


def patch_sample(
    model: Any, plan: Any, x: np.ndarray, pss: str, budget: float, bs: int, rng: Any
) -> np.ndarray:
    """The pixels (sorted flat indices into N*H*W) whose patch scanning takes about ``budget``
    seconds: one batch is timed, then as many whole batches as fit are drawn at random (all
    pixels when they fit)."""
    import time

    n_pix = x.shape[0] * x.shape[2] * x.shape[3]
    probe = np.sort(rng.choice(n_pix, size=min(bs, n_pix), replace=False))
    run, _, _ = patchwise(model, plan, x, pss, probe, bs)
    t0 = time.perf_counter()
    run()
    per_pixel = (time.perf_counter() - t0) / probe.size
    n = int(min(n_pix, max(probe.size, budget / max(per_pixel, 1e-9))))
    if n < n_pix:
        n = min(n_pix, max(bs, n // bs * bs))
    return np.sort(rng.choice(n_pix, size=n, replace=False))  # scanning order


def peer_case(spec: dict[str, Any], torch: Any) -> Any:
    """A PyTorch dense case (``torch_dsparse`` or ``torch_patchwise``) from its specification:
    ``network``, ``state`` (weights), ``size``, ``batch``, ``seed``, ``pass``, ``method`` and, for
    patch scanning, ``pixels`` and ``batch_size`` (None: tuned here)."""
    from bench import dense_peers
    from bench.workloads import Case
    from cnncore.dense import analyze

    model = model_from_spec(spec)
    plan = analyze(model, model.patch_size)
    x = image(spec["batch"], spec["size"], spec["seed"])
    pss, method = spec["pass"], spec["method"]
    config = f"{spec['network']} {spec['size']}x{spec['size']}"
    if method == "torch_dsparse":
        run = torch_dsparse(torch, plan, x, pss)
        return Case(run, "dense", pss, config, "torch", flops=0.0)
    if method == "torch_patchwise":
        bs = spec.get("batch_size") or dense_peers.tune_batch(torch, model, plan, x, pss)
        pixels = np.asarray(spec["pixels"])
        run = dense_peers.torch_patch_scanning(torch, model, plan, x, pixels, pss, bs)
        return Case(run, "dense", pss, config, "torch", flops=0.0, info={"batch_size": bs})
    raise ValueError(f"unknown PyTorch dense method {method!r}")
