"""Optimisers: ``SGD`` (exactly torch.optim.SGD) and step learning-rate schedules
(``StepLR``, ``MultiStepLR``, as torch.optim.lr_scheduler)."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from cnncore import device as _device
from cnncore.nn.module import Parameter
from cnncore_kernels import optim as _k

_HYPER = ("lr", "momentum", "weight_decay", "dampening", "nesterov")


def _number(value, name: str, lo: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= lo:
        raise ValueError(f"{name} must be a number >= {lo}, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


class SGD:
    """Stochastic gradient descent with momentum and weight decay, as ``torch.optim.SGD``::

        d = grad + weight_decay * p
        buf = d (first step) or momentum * buf + (1 - dampening) * d
        d = d + momentum * buf (nesterov) or buf
        p -= lr * d

    ``params``: an iterable of ``Parameter`` (e.g. ``model.parameters()``) or of dicts
    ``{"params": [...], "lr": ...}`` (parameter groups with their own hyper-parameters, e.g. a
    smaller rate for transferred layers).  Parameters that are frozen (``requires_grad=False``) or
    have no gradient are left alone; their momentum buffers are kept.
    """

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[dict],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            dampening=dampening,
            nesterov=nesterov,
        )
        items = list(params)
        if not items:
            raise ValueError("SGD got an empty parameter list")
        if not isinstance(items[0], dict):
            items = [{"params": items}]
        self.param_groups: list[dict[str, Any]] = []
        seen: set[int] = set()
        for gi, group in enumerate(items):
            if not isinstance(group, dict) or "params" not in group:
                raise TypeError(f"parameter group {gi} must be a dict with 'params'")
            unknown = set(group) - set(_HYPER) - {"params"}
            if unknown:
                raise ValueError(f"parameter group {gi} has unknown keys {sorted(unknown)}")
            ps = list(group["params"])
            for p in ps:
                if not isinstance(p, Parameter):
                    raise TypeError(f"SGD optimises Parameters, got {type(p).__name__}")
                if id(p) in seen:
                    raise ValueError("a parameter appears twice in the SGD parameter list")
                seen.add(id(p))
            g = {**defaults, **{k: group[k] for k in _HYPER if k in group}, "params": ps}
            self._check_hyper(g, f"group {gi}")
            self.param_groups.append(g)
        self._buffers: dict[int, object] = {}  # id(param) -> momentum buffer (an array)

    @staticmethod
    def _check_hyper(g: dict[str, Any], where: str) -> None:
        for k in ("lr", "momentum", "weight_decay", "dampening"):
            g[k] = _number(g[k], f"{k} ({where})")
        g["nesterov"] = bool(g["nesterov"])
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening 0")

    def params(self) -> list[Parameter]:
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self) -> None:
        for p in self.params():
            p.grad = None

    def step(self) -> None:
        """Update every parameter that requires a gradient and has one."""
        for g in self.param_groups:
            for p in g["params"]:
                if not p.requires_grad or p.grad is None:
                    continue
                if tuple(p.grad.shape) != p.shape or np.dtype(p.grad.dtype) != p.dtype:
                    raise ValueError(
                        f"gradient {tuple(p.grad.shape)} {p.grad.dtype} does not match its "
                        f"parameter {p.shape} {p.dtype}"
                    )
                if _device.is_cuda_array(p.data) != _device.is_cuda_array(p.grad):
                    raise TypeError("a parameter and its gradient live on different devices")
                buf, first = None, False
                if g["momentum"] != 0:
                    buf = self._buffers.get(id(p))
                    if buf is None or _device.is_cuda_array(buf) != _device.is_cuda_array(p.data):
                        buf = _device.to_device(np.zeros(p.shape, p.dtype), _where(p.data))
                        self._buffers[id(p)] = buf
                        first = True
                _k.sgd_step(
                    p.data,
                    p.grad,
                    buf,
                    g["lr"],
                    g["momentum"],
                    g["weight_decay"],
                    g["dampening"],
                    g["nesterov"],
                    first,
                )

    # -- state (for checkpoints) ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"param_groups": [hyper-parameters and parameter indices], "state": {index:
        {"momentum_buffer": ndarray}}}``, indices counting over all groups in order (as torch)."""
        groups, state, i = [], {}, 0
        for g in self.param_groups:
            idx = list(range(i, i + len(g["params"])))
            for j, p in zip(idx, g["params"], strict=True):
                if id(p) in self._buffers:
                    buf = _device.to_numpy(self._buffers[id(p)]).copy()
                    state[j] = {"momentum_buffer": buf}
            groups.append({**{k: g[k] for k in _HYPER}, "params": idx})
            i += len(g["params"])
        return {"param_groups": groups, "state": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore hyper-parameters and momentum buffers; everything is checked first, so a
        mismatched state raises ``ValueError`` and leaves the optimiser untouched."""
        self._apply_state(self._check_state(state))

    def _check_state(self, state) -> tuple[list[dict[str, Any]], dict[int, np.ndarray]]:
        """Validate a ``state_dict``; returns what ``_apply_state`` assigns.  Raises ValueError."""
        groups = state.get("param_groups") if isinstance(state, dict) else None
        if not isinstance(groups, list) or len(groups) != len(self.param_groups):
            raise ValueError(
                f"optimizer state has {len(groups) if isinstance(groups, list) else 'no'} "
                f"parameter groups, this optimizer has {len(self.param_groups)}"
            )
        new_hyper, i = [], 0
        for gi, (g, sg) in enumerate(zip(self.param_groups, groups, strict=True)):
            idx = list(range(i, i + len(g["params"])))
            if not isinstance(sg, dict) or list(sg.get("params", [])) != idx:
                raise ValueError(f"optimizer state group {gi} does not hold parameters {idx}")
            h = {k: sg[k] for k in _HYPER if k in sg}
            if set(h) != set(_HYPER):
                raise ValueError(f"optimizer state group {gi} lacks {sorted(set(_HYPER) - set(h))}")
            self._check_hyper(h, f"state group {gi}")
            new_hyper.append(h)
            i += len(g["params"])
        params = self.params()
        bufs: dict[int, np.ndarray] = {}
        entries = state.get("state", {})
        if not isinstance(entries, dict):
            raise ValueError("optimizer state's 'state' must be a dict")
        for key, entry in entries.items():
            try:
                j = int(key)
                buf = np.asarray(_device.to_numpy(entry["momentum_buffer"]))
            except (TypeError, ValueError, KeyError) as e:
                raise ValueError(f"optimizer state entry {key!r} is malformed ({e})") from None
            if not 0 <= j < len(params):
                raise ValueError(f"optimizer state names parameter {j}, there are {len(params)}")
            p = params[j]
            if tuple(buf.shape) != p.shape:
                raise ValueError(
                    f"momentum buffer {j} has shape {tuple(buf.shape)}, its parameter {p.shape}"
                )
            if not np.issubdtype(buf.dtype, np.floating) or not np.all(np.isfinite(buf)):
                raise ValueError(f"momentum buffer {j} is not a finite float array")
            bufs[j] = buf
        return new_hyper, bufs

    def _apply_state(self, checked: tuple[list[dict[str, Any]], dict[int, np.ndarray]]) -> None:
        new_hyper, bufs = checked
        for g, h in zip(self.param_groups, new_hyper, strict=True):
            g.update(h)
        self._buffers = {}
        for j, p in enumerate(self.params()):
            if j in bufs:
                b = np.array(bufs[j], dtype=p.dtype, copy=True, order="C")
                self._buffers[id(p)] = _device.to_device(b, _where(p.data))


def _where(a) -> str:
    return "cuda" if _device.is_cuda_array(a) else "cpu"


class StepLR:
    """Multiply every group's learning rate by ``gamma`` every ``step_size`` epochs, as
    ``torch.optim.lr_scheduler.StepLR``; call ``step()`` once per epoch, after the optimiser."""

    def __init__(self, optimizer: SGD, step_size: int, gamma: float = 0.1) -> None:
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral):
            raise TypeError(f"step_size must be an int, got {step_size!r}")
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.optimizer = optimizer
        self.step_size = int(step_size)
        self.gamma = _number(gamma, "gamma")
        self.last_epoch = 0
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]

    def _decays_at(self, epoch: int) -> bool:
        return epoch > 0 and epoch % self.step_size == 0

    def step(self) -> None:
        self.last_epoch += 1
        if self._decays_at(self.last_epoch):
            for g in self.optimizer.param_groups:
                g["lr"] = g["lr"] * self.gamma

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._apply_state(self._check_state(state))

    def _check_state(self, state) -> tuple[int, list[float]]:
        epoch = state.get("last_epoch") if isinstance(state, dict) else None
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"scheduler state has a bad last_epoch {epoch!r}")
        try:
            base = [float(b) for b in state.get("base_lrs", [])]
        except (TypeError, ValueError):
            raise ValueError("scheduler state has bad base_lrs") from None
        if len(base) != len(self.optimizer.param_groups):
            raise ValueError("scheduler state does not match the optimizer's parameter groups")
        return int(epoch), base

    def _apply_state(self, checked: tuple[int, list[float]]) -> None:
        self.last_epoch, self.base_lrs = checked


class MultiStepLR(StepLR):
    """Multiply the learning rates by ``gamma`` at each epoch in ``milestones``, as
    ``torch.optim.lr_scheduler.MultiStepLR`` (e.g. AlexNet's divisions by 10)."""

    def __init__(self, optimizer: SGD, milestones: Iterable[int], gamma: float = 0.1) -> None:
        ms = sorted(int(m) for m in milestones)
        if any(m < 1 for m in ms):
            raise ValueError(f"milestones must be >= 1, got {ms}")
        super().__init__(optimizer, 1, gamma)
        self.milestones = ms

    def step(self) -> None:
        self.last_epoch += 1
        factor = self.gamma ** self.milestones.count(self.last_epoch)
        if factor != 1.0:
            for g in self.optimizer.param_groups:
                g["lr"] = g["lr"] * factor
