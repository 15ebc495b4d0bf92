"""Dispatcher for the in-place SGD update: picks the CPU (NumPy) or GPU (Numba CUDA) twin."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from cnncore_kernels.arrays import twin


def sgd_step(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov, first):
    """One step of torch.optim.SGD on one parameter, in place (``param``, and ``buf`` if given).

    d = grad + weight_decay * param
    momentum != 0: buf = d if first else momentum * buf + (1 - dampening) * d
                   d = d + momentum * buf if nesterov else buf
    param -= lr * d
    ``buf`` is None when momentum == 0.  Arrays share shape, dtype and device.
    """
    # inputs validated by cnncore.optim.SGD
    return twin(param, _CPU, "optim").sgd_step(
        param, grad, buf, lr, momentum, weight_decay, dampening, nesterov, first
    )


def _sgd_step_cpu(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov, first):
    t = param.dtype.type  # scalars in the arrays' precision, as torch does
    if weight_decay != 0:
        d = param * t(weight_decay)
        d += grad
    else:
        d = grad
    if momentum != 0:
        if first:
            np.copyto(buf, d)
        else:
            buf *= t(momentum)
            if dampening != 0:
                buf += d * t(1 - dampening)
            else:
                buf += d
        if nesterov:
            d = d + buf * t(momentum)
        else:
            d = buf
    param -= d * t(lr)


# the CPU twin: the names and signatures of cnncore_kernels.cuda.optim
_CPU = SimpleNamespace(sgd_step=_sgd_step_cpu)
