"""The examples import cnncore before any library that loads OpenMP (no wait-policy warning)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("script", ["train_digits.py", "pixelwise_digits.py", "predict_zarr.py"])
def test_example_starts_without_the_openmp_warning(script: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-W", "always", str(EXAMPLES / script), "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "OpenMP runtime was loaded before cnncore" not in out.stderr
