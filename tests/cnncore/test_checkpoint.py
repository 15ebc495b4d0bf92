"""Checkpoints: round trip, atomic writes, refusal of corrupt or mismatched files (model left
untouched), and a resumed training run equal to the uninterrupted one."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

import cnncore.nn as nn
from cnncore.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from cnncore.optim import SGD, StepLR


def small(seed=0, c2=4):
    nn.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.Dropout(0.3), nn.MaxPool2d(2), nn.Conv2d(3, c2, 2))


def step(model, opt, x):
    y = model(x)
    opt.zero_grad()
    model.backward(np.ones_like(y))
    opt.step()


def trained(tmp_path, seed=0):
    m = small(seed)
    opt = SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    sched = StepLR(opt, 1, 0.5)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    for _ in range(2):
        step(m, opt, x)
        sched.step()
    rng = np.random.default_rng(42)
    rng.random(3)
    path = tmp_path / "ck.npz"
    save_checkpoint(path, m, opt, sched, epoch=2, rng=rng, extra={"note": "hi"})
    return m, opt, sched, rng, path, x


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])


def test_round_trip_restores_everything(tmp_path):
    m, opt, sched, rng, path, x = trained(tmp_path)
    m2 = small(seed=5)
    opt2 = SGD(m2.parameters(), lr=0.7, momentum=0.1)
    sched2 = StepLR(opt2, 1, 0.5)
    rng2 = np.random.default_rng(0)
    info = load_checkpoint(path, m2, opt2, sched2, rng2)
    assert info == {"epoch": 2, "extra": {"note": "hi"}}
    assert_same_state(m, m2)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 0.025
    assert sched2.last_epoch == 2
    assert rng2.random() == rng.random()
    assert m2[1].rng_state() == m[1].rng_state()
    # continuing gives identical parameters (momentum buffers, dropout masks restored)
    step(m, opt, x)
    step(m2, opt2, x)
    assert_same_state(m, m2)


def test_file_is_plain_npz_without_pickles(tmp_path):
    _, _, _, _, path, _ = trained(tmp_path)
    with np.load(path, allow_pickle=False) as z:
        assert "model/0.weight" in z.files and "optim/0/momentum_buffer" in z.files
        meta = json.loads(str(z["__meta__"]))
    assert meta["format"] == "cnncore-checkpoint" and meta["epoch"] == 2
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # temp file renamed


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    m, opt, sched, rng, path, _ = trained(tmp_path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(path, m, opt, sched, epoch=3, extra={"bad": object()})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]


def untouched(model_factory, path, **kw):
    m = model_factory()
    opt = SGD(m.parameters(), lr=0.3, momentum=0.9)
    before, lr = m.state_dict(), opt.param_groups[0]["lr"]
    dropout_state = m[1].rng_state() if len(m) > 1 else None
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, m, opt, **kw)
    assert_same_state_dict(m.state_dict(), before)
    assert opt.param_groups[0]["lr"] == lr and opt._buffers == {}
    if dropout_state is not None:
        assert m[1].rng_state() == dropout_state
    return str(info.value)


def assert_same_state_dict(a, b):
    for k in b:
        np.testing.assert_array_equal(a[k], b[k])


def test_refuses_wrong_shapes_and_names(tmp_path):
    _, _, _, _, path, _ = trained(tmp_path)
    msg = untouched(lambda: small(1, c2=5), path)
    assert "3.weight" in msg and "shape" in msg
    msg = untouched(
        lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.Dropout(0.3), nn.Conv2d(3, 4, 2)), path
    )
    assert "missing" in msg and "unexpected" in msg


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_refuses_corrupt_files(tmp_path, damage):
    _, _, _, _, path, _ = trained(tmp_path)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":  # inside the stored weights: the zip CRC catches it
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("model/0.weight.npy")
        h = info.header_offset  # local header: 30 bytes, then file name and extra field
        start = h + 30 + int.from_bytes(raw[h + 26 : h + 28], "little")
        start += int.from_bytes(raw[h + 28 : h + 30], "little")
        pos = start + info.compress_size - 4  # the last stored float
        raw[pos] ^= 0xFF
    elif damage == "garbage":
        raw = bytearray(b"not a checkpoint at all" * 10)
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    msg = untouched(lambda: small(1), path)
    assert "ck.npz" in msg


def test_refuses_foreign_npz_and_bad_metadata(tmp_path):
    m = small(1)
    p = tmp_path / "plain.npz"
    np.savez(p, **{"model/0.weight": np.zeros((3, 1, 3, 3))})
    assert "no __meta__" in untouched(lambda: small(1), p)
    meta = {"format": "cnncore-checkpoint", "version": 99}
    np.savez(
        p,
        __meta__=np.array(json.dumps(meta)),
        **{f"model/{k}": v for k, v in m.state_dict().items()},
    )
    assert "version" in untouched(lambda: small(1), p)
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.npz")


def test_refuses_bad_optimizer_state_and_non_finite_weights(tmp_path):
    m, opt, sched, rng, path, _ = trained(tmp_path)
    meta, arrays = read_checkpoint(path)
    arrays["optim/0/momentum_buffer"] = np.zeros((7,), np.float32)
    np.savez(tmp_path / "ck.npz", __meta__=np.array(json.dumps(meta)), **arrays)
    assert "momentum buffer" in untouched(lambda: small(1), path)
    meta, arrays = read_checkpoint(path)
    arrays["optim/0/momentum_buffer"] = np.zeros((3, 1, 3, 3), np.float32)
    arrays["model/3.bias"] = np.array([0, np.nan, 0, 0], np.float32)
    np.savez(tmp_path / "ck.npz", __meta__=np.array(json.dumps(meta)), **arrays)
    assert "finite" in untouched(lambda: small(1), path)


def test_pickled_object_arrays_are_refused(tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, __meta__=np.array([{"format": "x"}], dtype=object))
    assert "corrupt" in untouched(lambda: small(1), p)
