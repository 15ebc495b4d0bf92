"""The command-line examples start (their imports resolve and their options parse)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("script", ["train_digits.py", "pixelwise_digits.py", "predict_zarr.py"])
def test_example_starts(script: str) -> None:
    out = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout
