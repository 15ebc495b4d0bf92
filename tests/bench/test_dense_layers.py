"""``bench.dense_layers`` times the steps of the pass that ``predict`` runs and reads ONNX
Runtime's profile: checked on a small image so that CI runs it."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bench import dense_layers
from cnncore import dense, models
from cnncore.dense.dsparse import DenseNet
from cnncore.functional.conv_selection import conv_algorithm

HAVE_PEERS = all(importlib.util.find_spec(m) for m in ("torch", "onnx", "onnxruntime"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ours_steps_give_the_scores_of_predict(dtype):
    """The timed steps are the whole pass: same scores as ``predict`` (bit for bit: the same
    modules, fused the same way), one record per step, the algorithm of every convolution."""
    model = models.pixel65()
    if dtype == np.float64:
        model = model.double()
    model = model.eval()
    net = DenseNet(dense.analyze(model, 65)).eval()
    x = np.random.default_rng(1).standard_normal((1, 3, 9, 12)).astype(dtype)
    names: list[str] = []
    algs: dict[str, str] = {}
    y = dense_layers.ours_steps(net, x, lambda n, t: names.append(n), algs)
    np.testing.assert_array_equal(y, dense.predict(model, x, 65))
    assert y.dtype == dtype
    assert names == [
        "window (input padding)",
        "conv1+relu",
        "pool1",
        "conv2+relu",
        "pool2",
        "conv3+relu",
        "pool3",
        "fc4+relu",
        "fc5",
    ]
    # conv1 reads the 3-channel window: (1, 3, 9 + 59, 12 + 59)
    assert algs["conv1"] == conv_algorithm((1, 3, 68, 71), (32, 3, 5, 5), dtype=dtype)
    assert set(algs) == {"conv1", "conv2", "conv3", "fc4", "fc5"}


@pytest.mark.skipif(not HAVE_PEERS, reason="PyTorch or ONNX Runtime missing")
def test_measure_reports_every_step_of_the_three(capsys):
    """One round on a 12 x 12 image: a line per step of ours and of PyTorch, per node of ONNX
    Runtime's profile, and the whole passes; the profile file is removed."""
    import glob
    import os
    import tempfile

    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "dense_layers_ort*")))
    dense_layers.measure(12, rounds=1, threads=1)
    out = capsys.readouterr().out
    for who, step in [
        ("ours", "conv1+relu"),
        ("ours", "fc5"),
        ("torch", "pool3"),
        ("torch", "relu4"),
        ("ort", "(Conv)"),
        ("ort", "(MaxPool)"),
        ("ours", "whole pass (CPU)"),
        ("ort", "whole pass (wall)"),
    ]:
        assert any(line.split()[:1] == [who] and step in line for line in out.splitlines()), (
            who,
            step,
            out,
        )
    assert "winograd" in out or "im2col" in out or "shifted" in out
    after = set(glob.glob(os.path.join(tempfile.gettempdir(), "dense_layers_ort*")))
    assert after == before
