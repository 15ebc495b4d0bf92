"""Freezing and layer transfer (the experiments of Yosinski et al. 2014).

With networks A (trained on task A) and B (trained on task B) and a fresh network for task B:
  * ``AnB``:  ``copy_layers(A, new, n, freeze=True)``, then train new on B;
  * ``AnB+``: ``copy_layers(A, new, n)`` (fine-tune everything);
  * ``BnB`` / ``BnB+``: the same with B as the source.
``n`` counts top-level children (conv, activation, pool, norm, ... one child each);
``children_for_weight_layers(model, k)`` turns "the first k weight layers" of the paper into it.
"""

from __future__ import annotations

import numpy as np

from cnncore import device as _device
from cnncore.nn.module import Module, Parameter


def _first_children(model: Module, n: int, what: str) -> list[tuple[str, Module]]:
    kids = list(model.named_children())
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= len(kids):
        raise ValueError(f"n must be an int in [0, {len(kids)}] for {what}, got {n!r}")
    return kids[:n]


def _prefix_parameters(model: Module, n: int, what: str) -> list[tuple[str, Parameter]]:
    out = []
    for name, child in _first_children(model, n, what):
        out.extend(child.named_parameters(name))
    return out


def freeze_all(module: Module) -> Module:
    """``requires_grad=False`` on every parameter of ``module``; their gradients are dropped."""
    for p in module.parameters():
        p.requires_grad = False
        p.grad = None
    return module


def unfreeze_all(module: Module) -> Module:
    """``requires_grad=True`` on every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad = True
    return module


def freeze_layers(model: Module, n: int) -> Module:
    """Freeze the first ``n`` top-level children of ``model``."""
    for _, child in _first_children(model, n, "model"):
        freeze_all(child)
    return model


def children_for_weight_layers(model: Module, k: int) -> int:
    """The number of top-level children that covers the first ``k`` children with parameters
    (the paper's layers 1..k), including the parameter-free layers before the (k+1)-th."""
    kids = list(model.named_children())
    weighted = [i for i, (_, c) in enumerate(kids) if any(True for _ in c.parameters())]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= len(weighted):
        raise ValueError(f"k must be in [0, {len(weighted)}] (layers with weights), got {k!r}")
    if k == len(weighted):
        return len(kids)
    return weighted[k]


def copy_layers(source: Module, target: Module, n: int, freeze: bool = False) -> Module:
    """Copy the parameters of the first ``n`` top-level children of ``source`` into ``target``
    (copies, not shared arrays; each keeps the target's dtype and device); with ``freeze=True``
    those children of ``target`` are frozen.

    Both prefixes must have the same parameter names and shapes; otherwise ``ValueError`` names
    the first mismatch and ``target`` is left untouched.
    """
    src = _prefix_parameters(source, n, "source")
    dst = _prefix_parameters(target, n, "target")
    src_names, dst_names = [a for a, _ in src], [a for a, _ in dst]
    if src_names != dst_names:
        raise ValueError(
            f"the first {n} layers differ in parameters: source has {src_names}, target has "
            f"{dst_names}"
        )
    arrays: list[np.ndarray] = []
    for (name, ps), (_, pt) in zip(src, dst, strict=True):
        if ps.shape != pt.shape:
            raise ValueError(f"shape mismatch for {name!r}: source {ps.shape}, target {pt.shape}")
        arrays.append(_device.to_numpy(ps.data))
    for (_, pt), a in zip(dst, arrays, strict=True):
        if _device.is_cuda_array(pt.data):
            pt.data = _device.to_device(np.ascontiguousarray(a, dtype=np.float32), "cuda")
        else:
            pt.data = np.array(a, dtype=pt.dtype, copy=True, order="C")
        pt.grad = None
    if freeze:
        freeze_layers(target, n)
    return target
