"""Checkpoints under damage: every corrupted byte of a small checkpoint either loads the very same
state or raises ``CheckpointError`` (with the original exception as its cause), and the temporary
files of killed saves are removed by the next successful save of the same path."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import cnncore.nn as nn
from cnncore.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint


def tiny(seed=0):
    nn.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 1))


def saved(tmp_path):
    m = tiny()
    path = tmp_path / "ck.npz"
    save_checkpoint(path, m, epoch=1)
    return m, path


def test_every_corrupted_byte_is_refused_or_harmless(tmp_path):
    m, path = saved(tmp_path)
    good = path.read_bytes()
    assert len(good) < 4096  # small enough to sweep every byte in about a second
    expected = m.state_dict()
    bad = tmp_path / "bad.npz"
    target = tiny(seed=1)
    refused = harmless = 0
    for i in range(len(good)):
        data = bytearray(good)
        data[i] ^= 0xFF
        bad.write_bytes(bytes(data))
        before = target.state_dict()
        try:
            info = load_checkpoint(bad, target)
        except CheckpointError as e:
            assert e.__cause__ is not None or "checkpoint" in str(e)
            refused += 1
            for k, a in before.items():  # refused: the model is left untouched
                np.testing.assert_array_equal(target.state_dict()[k], a)
            continue
        # accepted: only bytes that carry no checkpoint content (zip timestamps, ...)
        harmless += 1
        assert info["epoch"] == 1
        for k, a in expected.items():
            np.testing.assert_array_equal(target.state_dict()[k], a)
        target = tiny(seed=1)
    assert refused > len(good) // 2 and refused + harmless == len(good)


def _central_directory_field(data: bytes, offset: int) -> int:
    """Position of a field of the first central-directory entry (signature PK\\x01\\x02)."""
    return data.index(b"PK\x01\x02") + offset


@pytest.mark.parametrize(
    "field, offset, value",
    [
        ("compression method", 10, 99),  # zipfile: NotImplementedError
        ("version needed", 6, 0xFF),  # zipfile: NotImplementedError
        ("flags (encrypted)", 8, 0x01),  # zipfile: RuntimeError (password required)
    ],
)
def test_damaged_zip_directory_fields_are_checkpoint_errors(tmp_path, field, offset, value):
    _, path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, _central_directory_field(bytes(data), offset), value)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert info.value.__cause__ is not None, field
    assert not isinstance(info.value.__cause__, CheckpointError)


def test_truncated_and_foreign_files_are_checkpoint_errors(tmp_path):
    _, path = saved(tmp_path)
    good = path.read_bytes()
    for n in (0, 10, len(good) // 2, len(good) - 1):
        path.write_bytes(good[:n])
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(path)
        assert info.value.__cause__ is not None or n == 0 or "checkpoint" in str(info.value)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.txt", "not an array")
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def test_successful_save_removes_stale_temporaries_of_the_same_path(tmp_path):
    m, path = saved(tmp_path)
    stale = [tmp_path / f".ck.npz.{tag}.tmp" for tag in ("abc123", "x_y")]
    other = tmp_path / ".other.npz.abc.tmp"  # another checkpoint's temporary: not ours
    for f in [*stale, other]:
        f.write_bytes(b"half written")
    save_checkpoint(path, m, epoch=2)
    assert not any(f.exists() for f in stale)
    assert other.exists()
    assert load_checkpoint(path, tiny(seed=3))["epoch"] == 2
    assert sorted(os.listdir(tmp_path)) == sorted([".other.npz.abc.tmp", "ck.npz"])


def test_save_killed_before_rename_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    path = tmp_path / "ck.npz"
    # a child process dies (os._exit) inside np.savez, after the temporary file was created
    code = f"""
import os, numpy as np
import cnncore.nn as nn
from cnncore.checkpoint import save_checkpoint
def die(*a, **k):
    os._exit(3)
np.savez = die
save_checkpoint({str(path)!r}, nn.Sequential(nn.Linear(2, 1)))
"""
    proc = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert proc.returncode == 3
    leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(leftovers) == 1 and not path.exists()
    m = tiny()
    save_checkpoint(path, m)
    assert os.listdir(tmp_path) == ["ck.npz"]
