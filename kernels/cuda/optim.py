"""CUDA SGD update: twin of ``cnncore_kernels.optim.sgd_step`` (in place, torch.optim.SGD's rule).

Inputs are trusted (validated in ``cnncore.optim.SGD``): float32 device arrays of one shape.  The
arithmetic follows the CPU twin's order with float32 scalars.
"""

from __future__ import annotations

from typing import Any

from numba import cuda

from cnncore_kernels.cuda import _launch as L


@cuda.jit
def _sgd(
    param,
    grad,
    buf,
    n,
    lr,
    momentum,
    weight_decay,
    damp,
    use_wd,
    use_momentum,
    use_damp,
    nesterov,
    first,
):
    # param, grad, buf: (n,) flat; buf is a dummy unless use_momentum.
    # d = grad + wd * param; buf = d (first) or momentum * buf + (1 - dampening) * d;
    # d = d + momentum * buf (nesterov) or buf; param -= lr * d
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        d = grad[i]
        if use_wd:
            d = param[i] * weight_decay + d
        if use_momentum:
            if first:
                b = d
            else:
                b = buf[i] * momentum
                if use_damp:
                    b = b + d * damp
                else:
                    b = b + d
            buf[i] = b
            if nesterov:
                d = d + b * momentum
            else:
                d = b
        param[i] = param[i] - d * lr


def sgd_step(
    param: Any,
    grad: Any,
    buf: Any,
    lr: float,
    momentum: float,
    weight_decay: float,
    dampening: float,
    nesterov: bool,
    first: bool,
) -> None:
    """One step of torch.optim.SGD on one parameter, in place (``param``, and ``buf`` if given)."""
    param, grad = L.inplace(param), L.device(grad)
    n = param.size
    use_momentum = momentum != 0
    bufv = L.flat(L.inplace(buf)) if use_momentum else L.flat(grad)  # unused without momentum
    blocks, threads = L.config(n)
    _sgd[blocks, threads](
        L.flat(param),
        L.flat(grad),
        bufv,
        n,
        L.f32(lr),
        L.f32(momentum),
        L.f32(weight_decay),
        L.f32(1 - dampening),
        int(weight_decay != 0),
        int(use_momentum),
        int(dampening != 0),
        int(bool(nesterov)),
        int(bool(first)),
    )
