"""The thin engine: ``Parameter``, ``Module`` and the layers (one file per layer family)."""

from cnncore.nn.conv import Conv2d
from cnncore.nn.init import manual_seed
from cnncore.nn.module import Module, Parameter, grad_enabled, no_grad

__all__ = ["Conv2d", "Module", "Parameter", "grad_enabled", "manual_seed", "no_grad"]
