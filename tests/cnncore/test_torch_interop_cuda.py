"""`nn.to_torch` of a model whose Parameters live on the device (Numba's CUDA simulator): the
weights come back to the host, equal to those of the same model on the CPU."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest

if "numba.cuda" in sys.modules:  # the simulator must be chosen before numba.cuda is imported
    from numba.cuda.core import config as _cuda_config

    if not _cuda_config.ENABLE_CUDASIM:
        pytest.skip("numba.cuda already imported without the simulator", allow_module_level=True)

import torch  # noqa: E402

import tests.kernels.cuda.sim  # noqa: E402, F401  (importing it turns the simulator on)
from cnncore import dense, models, nn  # noqa: E402


def test_to_torch_copies_device_parameters_to_the_host() -> None:
    nn.manual_seed(0)
    cpu = models.toy15().eval()
    gpu = copy.deepcopy(cpu).to("cuda")
    assert not isinstance(gpu.conv1.weight.data, np.ndarray)
    got, want = nn.to_torch(gpu).state_dict(), nn.to_torch(cpu).state_dict()
    assert list(got) == list(want)
    for k in want:
        assert got[k].device == torch.device("cpu")
        assert torch.equal(got[k], want[k]), k
    dense_got = nn.to_torch(dense.to_dense(gpu)).state_dict()
    for k, t in nn.to_torch(dense.to_dense(cpu)).state_dict().items():
        assert torch.equal(dense_got[k], t), k
