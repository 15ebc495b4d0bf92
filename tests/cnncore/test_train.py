"""The training loop: learning, repeatable runs, exact resumption from a checkpoint, history."""

from __future__ import annotations

import numpy as np
import pytest

import cnncore.nn as nn
from cnncore.checkpoint import CheckpointError
from cnncore.data import Augmentation, predict_proba, predict_ten_crop
from cnncore.optim import SGD, StepLR
from cnncore.train import Trainer, fit


def toy_data(n=48, seed=0):
    """Two classes of 6x6 images: a bright bar in the top or the bottom half, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 1, 6, 6)).astype(np.float32) * 0.3
    for i in range(n):
        rows = slice(0, 3) if y[i] == 0 else slice(3, 6)
        x[i, 0, rows, 1:5] += 1.0
    return x, y


def toy_net(seed=0):
    nn.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(36, 2),
    )


def make_trainer(tmp_path=None, seed=0, net_seed=0, **kw):
    model = toy_net(net_seed)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return Trainer(
        model,
        opt,
        scheduler=StepLR(opt, 2, 0.5),
        augment=Augmentation(crop_size=6, padding=1, flip=True),
        seed=seed,
        checkpoint=None if tmp_path is None else tmp_path / "run.npz",
        progress=False,
        **kw,
    )


def params(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_training_learns_and_reports_history():
    x, y = toy_data()
    t = make_trainer()
    hist = t.fit(x, y, epochs=4, batch_size=8, validation=toy_data(24, seed=1))
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert [h["lr"] for h in hist] == [0.1, 0.1, 0.05, 0.05]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[-1]["val_accuracy"] >= 0.9
    assert 0 <= hist[-1]["accuracy"] <= 1 and hist[-1]["seconds"] > 0
    ev = t.evaluate(*toy_data(24, seed=1))
    assert ev["accuracy"] == hist[-1]["val_accuracy"]
    assert t.model.training  # evaluate restores the mode
    proba = predict_proba(t.model, x)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    tc = predict_ten_crop(t.model, np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), 6)
    assert tc.shape == (48, 2) and np.mean(tc.argmax(1) == y) >= 0.8


def test_same_seed_same_run_other_seed_other_run():
    x, y = toy_data()
    a, b, c = make_trainer(seed=3), make_trainer(seed=3), make_trainer(seed=4)
    for t in (a, b, c):
        t.fit(x, y, epochs=2, batch_size=8)
    pa, pb, pc = params(a.model), params(b.model), params(c.model)
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])
    assert any(not np.array_equal(pa[k], pc[k]) for k in pa)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    x, y = toy_data()
    full = make_trainer(seed=5)
    full.fit(x, y, epochs=5, batch_size=8)

    first = make_trainer(tmp_path, seed=5)
    first.fit(x, y, epochs=2, batch_size=8)  # "crash" after epoch 2
    resumed = make_trainer(net_seed=9, seed=123)  # other weights, other seed: all overwritten
    resumed.resume(tmp_path / "run.npz")
    assert resumed.epoch == 2 and len(resumed.history) == 2
    resumed.fit(x, y, epochs=5, batch_size=8)

    pf, pr = params(full.model), params(resumed.model)
    for k in pf:
        np.testing.assert_array_equal(pr[k], pf[k], err_msg=k)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.optimizer.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"]


def test_resume_refuses_other_architecture(tmp_path):
    x, y = toy_data(16)
    t = make_trainer(tmp_path)
    t.fit(x, y, epochs=1, batch_size=8)
    nn.manual_seed(0)
    other = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(144, 2))
    before = params(other)
    t2 = Trainer(other, SGD(other.parameters(), lr=0.1), progress=False)
    with pytest.raises(CheckpointError):
        t2.resume(tmp_path / "run.npz")
    for k, v in params(other).items():
        np.testing.assert_array_equal(v, before[k])
    assert t2.epoch == 0


def test_fit_function_and_bad_data():
    x, y = toy_data(16)
    model = toy_net()
    hist = fit(model, x, y, SGD(model.parameters(), lr=0.05), epochs=1, progress=False)
    assert len(hist) == 1
    with pytest.raises(ValueError, match="same first axis"):
        fit(model, x, y[:3], SGD(model.parameters(), lr=0.05), epochs=1, progress=False)


def test_digits_example_runs_one_epoch(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    import importlib.util
    import pathlib

    from threadpoolctl import threadpool_limits

    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "train_digits.py"
    spec = importlib.util.spec_from_file_location("train_digits_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    ck = tmp_path / "digits.npz"
    argv = ["train_digits.py", "--epochs", "1", "--subset", "64", "--checkpoint", str(ck)]
    monkeypatch.setattr("sys.argv", [*argv, "--threads", "0"])
    with threadpool_limits(limits=1):  # the example's own limit, restored after the test
        example.main()
    out = capsys.readouterr().out
    assert "held-out accuracy (450 images)" in out and "epoch 1  loss" in out and ck.exists()
