"""The per-CPU-level builds of the kernels: which one is chosen, and that every one built here
computes the same results (each is run in its own process, forced by CNNCORE_KERNELS_ISA)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cnncore.functional.conv_selection import WINOGRAD_ERROR_BOUND
from cnncore_kernels import isa

BUILT = ["x86_64_v3", "x86_64_v4"]


@pytest.mark.parametrize(
    ("level", "expected"), [(0, None), (1, None), (2, None), (3, "x86_64_v3"), (4, "x86_64_v4")]
)
def test_auto_picks_the_highest_level_the_cpu_runs(level, expected):
    assert isa.choose(level, BUILT, "") == expected
    assert isa.choose(level, BUILT, "auto") == expected
    assert isa.choose(level, [], "") is None  # a native or non-x86 build: the plain modules


def test_auto_never_picks_an_unknown_folder():
    assert isa.choose(4, ["native"], "") is None
    assert isa.choose(4, ["native", "x86_64_v3"], "") == "x86_64_v3"


def test_forced_choice():
    assert isa.choose(4, BUILT, "baseline") is None
    assert isa.choose(4, BUILT, "x86-64-v3") == "x86_64_v3"
    assert isa.choose(4, BUILT, "X86_64_V4") == "x86_64_v4"
    assert isa.choose(1, ["native"], "native") == "native"  # a developer's own build, unchecked
    with pytest.raises(ImportError, match="needs x86-64 level 4, this CPU runs level 3"):
        isa.choose(3, BUILT, "x86-64-v4")
    with pytest.raises(ImportError, match="no such build"):
        isa.choose(4, ["x86_64_v3"], "x86-64-v4")


def test_loaded_extensions_come_from_the_selected_build():
    from cnncore_kernels import _conv, _pooling

    info = isa.info()
    assert info["cpu_level"] in (0, 1, 2, 3, 4)
    for module in (_conv, _pooling):
        folder = os.path.basename(os.path.dirname(module.__file__))
        if info["selected"] == "baseline":
            assert folder not in isa.LEVELS, module.__file__
        else:
            assert folder == info["selected"], module.__file__


_RUN = """
import json, sys
import numpy as np
from cnncore.functional import conv2d, local_contrast_norm, max_pool2d
from cnncore.functional.conv_selection import WINOGRAD_ERROR_BOUND
from cnncore_kernels import isa
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 5, 11, 13)).astype(np.float32)
w = rng.standard_normal((6, 5, 3, 3)).astype(np.float32)
y = conv2d(x, w, padding=1, algorithm="im2col")
yw = conv2d(x, w, padding=1, algorithm="winograd")
p, i = max_pool2d(y, 3, 2, 1)
z = local_contrast_norm(x)
print(json.dumps({"isa": isa.info()["selected"], "y": y.tolist(), "yw": yw.tolist(),
                  "p": p.tolist(), "i": i.tolist(), "z": z.tolist()}))
"""


def _run(choice: str) -> dict:
    env = {**os.environ, isa.ENV: choice}
    out = subprocess.run(
        [sys.executable, "-c", _RUN], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.splitlines()[-1])


def test_every_runnable_build_gives_the_same_results():
    level = isa.info()["cpu_level"]
    runnable = [v for v in isa.built_variants() if isa.LEVELS.get(v, 99) <= level]
    if not runnable:
        pytest.skip("only the baseline is built (or the CPU runs none of the variants)")
    base = _run("baseline")
    assert base["isa"] == "baseline"
    for variant in runnable:
        got = _run(variant)
        assert got["isa"] == variant
        # FMA contraction in the AVX2/AVX-512 builds changes the last bits only
        for key in ("y", "p", "z"):
            np.testing.assert_allclose(got[key], base[key], rtol=1e-5, atol=1e-5, err_msg=key)
        # Winograd's transforms amplify those bits: within twice its error bound (Frobenius)
        yw, base_yw = np.array(got["yw"]), np.array(base["yw"])
        assert np.linalg.norm(yw - base_yw) <= 2 * WINOGRAD_ERROR_BOUND * np.linalg.norm(base_yw)
        assert got["i"] == base["i"]  # no near-ties in this seeded input
