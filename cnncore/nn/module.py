"""``Parameter`` and ``Module``: the two-method contract of the engine.

A module has ``forward(x) -> y`` and ``backward(dy) -> dx``.  ``forward`` caches what ``backward``
needs (only while gradients are enabled, see ``no_grad``); ``backward`` returns the gradient with
respect to the input and *adds* the gradients of its parameters into ``Parameter.grad``.
Parameters and sub-modules are found by walking the attributes in the order they were set, so
``named_parameters`` gives PyTorch's names (``"0.weight"`` in a ``Sequential``, ``"conv1.bias"``).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping

import numpy as np
from numpy.typing import DTypeLike

from cnncore import device as _device
from cnncore.nn.init import LazyUniformFanIn

_state = threading.local()


def _dtype_of(a) -> np.dtype:
    iface = getattr(a, "__cuda_array_interface__", None)  # torch CUDA tensors: no NumPy dtype
    if iface is not None:
        return np.dtype(iface["typestr"])
    try:
        return np.dtype(a.dtype)
    except TypeError:
        raise TypeError(f"expected an array with a NumPy dtype, got dtype {a.dtype!r}") from None


def grad_enabled() -> bool:
    """Whether forward passes cache what backward needs (True unless inside ``no_grad``)."""
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Forward passes inside this block cache nothing (inference: less memory, no backward)."""
    previous = grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


def float_dtype(dtype: DTypeLike, owner: str) -> np.dtype:
    """The parameter dtype of a layer: float32 or float64 (what the CPU kernels compute in);
    None means float32, as torch's ``dtype=None`` means its default."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{owner}: dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{owner}: dtype must be float32 or float64, got {dt}")
    return dt


class Parameter:
    """A trainable array: ``data``, its gradient ``grad`` (None until a backward) and
    ``requires_grad`` (False freezes it: no gradient is computed or stored, SGD skips it)."""

    def __init__(self, data, requires_grad: bool = True) -> None:
        self._data = data  # an array, or a LazyUniformFanIn drawn on first access of .data
        self.grad = None  # an array like data, once accumulated
        self.requires_grad = bool(requires_grad)

    @property
    def data(self):
        if isinstance(self._data, LazyUniformFanIn):
            self._data = self._data.materialize()
        return self._data

    @data.setter
    def data(self, value) -> None:
        self._data = value

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._data.dtype)

    def accumulate(self, g) -> None:
        """Add ``g`` into ``grad`` (the gradient of several backward passes adds up)."""
        if not self.requires_grad or g is None:
            return
        if self.grad is None:
            self.grad = g
        else:
            self.grad = _device.add(self.grad, g)

    def __repr__(self) -> str:
        return (
            f"Parameter(shape={self.shape}, dtype={self.dtype}, requires_grad={self.requires_grad})"
        )


class Module:
    """Base class of every layer and network."""

    training: bool = True

    # -- the contract -------------------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def backward_params(self, dy) -> None:
        """``backward`` for when the input's gradient is not needed (a network's input images, as
        a ``torch`` input without ``requires_grad``): adds into each trainable parameter's
        ``.grad`` exactly as ``backward`` does and returns None.  ``Conv2d`` and ``Linear`` skip
        computing the input's gradient; containers run nothing before their first child with a
        trainable parameter (frozen or parameter-free layers at the front) and that child's
        ``backward_params``.  Here: nothing without a trainable parameter, else ``backward`` with
        its result dropped."""
        if self.trainable():
            self.backward(dy)

    def trainable(self) -> bool:
        """Whether any parameter of this module (children included) has ``requires_grad``."""
        return any(p.requires_grad for p in self.parameters())

    def __call__(self, x):
        return self.forward(x)

    # -- what backward's dy must look like ----------------------------------------------------
    def _remember_output(self, y) -> None:
        """Record the shape, dtype and device of the forward's output ``y`` (with gradients
        enabled), which ``_check_dy`` then asks of the backward's ``dy``."""
        if not grad_enabled():
            self._dy_spec = None
            return
        on_gpu = _device.is_cuda_array(y)
        dtype = _dtype_of(y)
        self._dy_spec = (tuple(int(s) for s in y.shape), dtype, on_gpu)

    def _check_dy(self, dy) -> None:
        """``dy`` must be an array shaped, typed and placed like the last forward's output.

        Raises ``TypeError`` (None, not an array, other dtype or device) or ``ValueError`` (other
        shape), naming the module; a float64 ``dy`` for a float32 forward is refused, not
        silently turned into a float64 ``dx``.
        """
        name = type(self).__name__
        spec = getattr(self, "_dy_spec", None)
        if spec is None:
            raise RuntimeError(f"{name}.backward needs a forward pass with gradients enabled first")
        shape, dtype, on_gpu = spec
        if dy is None or not hasattr(dy, "shape") or not hasattr(dy, "dtype"):
            raise TypeError(f"{name}.backward: dy must be an array of shape {shape}, got {dy!r}")
        if _device.is_cuda_array(dy) != on_gpu:
            where = "GPU" if on_gpu else "CPU"
            raise TypeError(
                f"{name}.backward: dy must be a {where} array like the forward's output"
            )
        dy_dtype = _dtype_of(dy)
        if dy_dtype != dtype:
            raise TypeError(
                f"{name}.backward: dy has dtype {dy_dtype}, the forward's output has {dtype}"
            )
        if tuple(int(s) for s in dy.shape) != shape:
            raise ValueError(
                f"{name}.backward: dy must have the output shape {shape}, got {tuple(dy.shape)}"
            )

    # -- walking attributes -------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        seen: set[int] = set()
        for mod_name, mod in self.named_modules(prefix):
            for name, value in vars(mod).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{mod_name}.{name}" if mod_name else name), value

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    # -- state --------------------------------------------------------------------------------
    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def add_module(self, name: str, module: Module | None) -> None:
        """Register ``module`` as the child ``name`` (names such as ``"0"`` need this form)."""
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"module name must be a non-empty string without '.', got {name!r}")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{name!r} must be a Module, got {type(module).__name__}")
        if name in vars(self) and not isinstance(vars(self)[name], (Module, type(None))):
            raise ValueError(f"attribute {name!r} already exists and is not a module")
        setattr(self, name, module)

    def astype(self, dtype: DTypeLike) -> Module:
        """Convert every parameter to ``dtype`` (float32 or float64, CPU); grads are dropped.

        ``model.double()`` is the float64 model that gradient checks need.
        """
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        for name, p in self.named_parameters():
            if _device.is_cuda_array(p.data):
                if dt != np.float32:
                    raise TypeError(f"parameter {name!r} is on the GPU, where only float32 exists")
                continue
            p.data = np.ascontiguousarray(p.data, dtype=dt)
            p.grad = None
        return self

    def double(self) -> Module:
        """Parameters to float64 (``astype(np.float64)``)."""
        return self.astype(np.float64)

    def float(self) -> Module:
        """Parameters to float32 (``astype(np.float32)``)."""
        return self.astype(np.float32)

    def to(self, device: str) -> Module:
        """Move every parameter to ``"cpu"`` or ``"cuda"`` (float32 on the GPU); drops grads."""
        for p in self.parameters():
            p.data = _device.to_device(p.data, device)
            p.grad = None
        return self

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of the parameters as NumPy arrays, under PyTorch's names."""
        return OrderedDict((n, _device.to_numpy(p.data).copy()) for n, p in self.named_parameters())

    def load_state_dict(self, state: Mapping[str, np.ndarray], strict: bool = True) -> None:
        """Load arrays (NumPy, or torch tensors) by PyTorch's names; all-or-nothing.

        Every name and shape is checked before anything is assigned, so a mismatched or corrupt
        state leaves the module untouched.  Raises KeyError/ValueError naming the offending
        entry, and TypeError if ``state`` is not a mapping.
        """
        if not isinstance(state, Mapping):
            raise TypeError(
                f"load_state_dict needs a mapping of names to arrays, got {type(state).__name__}"
            )
        params = dict(self.named_parameters())
        arrays = {}
        for name, value in state.items():
            if name not in params:
                if strict:
                    raise KeyError(f"unexpected key {name!r} in state_dict")
                continue
            arr = _device.to_numpy(value)
            if tuple(arr.shape) != params[name].shape:
                raise ValueError(
                    f"shape mismatch for {name!r}: state_dict has {tuple(arr.shape)}, "
                    f"module has {params[name].shape}"
                )
            if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)):
                raise ValueError(f"entry {name!r} is not a finite float array")
            arrays[name] = arr
        missing = [n for n in params if n not in arrays]
        if strict and missing:
            raise KeyError(f"missing keys in state_dict: {missing}")
        for name, arr in arrays.items():
            p = params[name]
            on_gpu = _device.is_cuda_array(p.data)
            target = np.float32 if on_gpu else p.dtype
            new = np.array(arr, dtype=target, copy=True, order="C")
            p.data = _device.to_device(new, "cuda") if on_gpu else new

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        kids = list(self.named_children())
        if not kids:
            return lines[0] + ")"
        for name, child in kids:
            sub = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + "\n)"
