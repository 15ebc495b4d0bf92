"""``python -m bench compare``: the row-by-row reproducibility check of two runs."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import compare, report  # noqa: E402

COMMITTED = os.path.join(ROOT, "bench", "results", "results.json")


def _machine(**kw):
    m = {
        "processor": "AMD EPYC",
        "machine": "x86_64",
        "vendor": "AuthenticAMD",
        "cpu_family": 25,
        "isa_flags": ["avx", "avx2", "fma"],
        "python": "3.11.7",
        "numpy": "2.4.6",
        "torch": "2.13.0+cpu",
        "onnxruntime": "1.32.0",
        "cnncore": "0.1.0",
        "usable_cores": 2,
        "threads": 2,
        "import_order": ["cnncore_kernels"],
        "thread_settings": {"OMP_NUM_THREADS": None, "libgomp_wait_policy": "PASSIVE"},
        "libraries": {"threadpools": [{"internal_api": "openblas", "version": "0.3.30"}]},
        "load_average_start": 0.5,
        "load_average_end": 1.0,
        "peer": {"mode": "own", "torch_num_threads": 2},
    }
    m.update(kw)
    return m


def _kernel(impl, median, lo, hi, config="8x64x56x56 K64 k3"):
    return report.throughput_info(
        seconds=median,
        kernel="conv2d",
        direction="forward",
        config=config,
        impl=impl,
        flops=1e9,
        sgemm_peak_gflops=200.0,
        seconds_min=lo,
        seconds_max=hi,
        rounds=5,
    )


def _dense(method, median, lo, hi):
    return {
        "network": "pixel65",
        "patch_size": 65,
        "image_size": 64,
        "batch": 1,
        "pass": "forward",
        "method": method,
        "pixels": 4096,
        "seconds": median,
        "seconds_min": lo,
        "seconds_max": hi,
    }


def _results(machine, kernels, dense):
    res = report.new_results("python -m bench", machine)
    res["throughput"] = kernels
    res["dense"] = dense
    res["speedups"] = report.speedups(dense)
    return res


@pytest.fixture
def pair():
    old = _results(
        _machine(),
        [_kernel("cnncore", 0.010, 0.009, 0.011), _kernel("torch", 0.020, 0.019, 0.021)],
        [_dense("patchwise", 2.0, 1.9, 2.1), _dense("dsparse", 0.05, 0.045, 0.055)],
    )
    new = _results(
        _machine(),
        [  # ours within the spread both ways; torch 1.5x slower, outside both spreads
            _kernel("cnncore", 0.0105, 0.0095, 0.0120),
            _kernel("torch", 0.030, 0.029, 0.031),
            _kernel("cnncore", 0.001, 0.001, 0.001, config="only in new"),
        ],
        [_dense("patchwise", 2.05, 2.0, 2.2), _dense("dsparse", 0.040, 0.039, 0.041)],
    )
    return old, new


def test_rows_ratios_and_spreads(pair):
    old, new = pair
    c = compare.compare(old, new)
    rows = {r["label"]: r for r in c["rows"]}
    assert len(rows) == 4 and c["only_old"] == 0 and c["only_new"] == 1
    ours = rows["conv2d forward 8x64x56x56 K64 k3 (cnncore)"]
    assert ours["ratio"] == pytest.approx(1.05)
    assert ours["new_in_old"] is True and ours["old_in_new"] is True
    torch = rows["conv2d forward 8x64x56x56 K64 k3 (torch)"]
    assert torch["ratio"] == pytest.approx(1.5)
    assert torch["new_in_old"] is False and torch["old_in_new"] is False
    # NEW 2.05 inside OLD's [1.9-2.1]; OLD 2.0 on the edge of NEW's [2.0-2.2]: inclusive
    pw = rows["pixel65 64x64 forward patchwise"]
    assert pw["new_in_old"] is True and pw["old_in_new"] is True
    ds = rows["pixel65 64x64 forward dsparse"]  # 0.040 below OLD's 0.045; 0.05 above NEW's 0.041
    assert ds["new_in_old"] is False and ds["old_in_new"] is False
    s = c["summary"]
    assert (s["rows"], s["with_spread"], s["new_in_old"], s["old_in_new"], s["either"]) == (
        4,
        4,
        2,
        2,
        2,
    )
    assert s["largest"][0]["label"] == torch["label"]  # |log 1.5| beats |log 0.8|
    expected = (1.05 * 1.5 * (2.05 / 2.0) * 0.8) ** 0.25
    assert s["geomean_ratio"] == pytest.approx(expected)
    assert c["warnings"] == []  # same machine, settings and a quiet load
    (line,) = c["peer_ratios"]
    assert line.startswith("conv2d forward: 2.00 (OLD, 1 pairs) against 2.86 (NEW, 1 pairs)")


def test_rows_without_spread_are_not_counted(pair):
    old, new = pair
    for r in new["throughput"]:
        r.pop("seconds_min"), r.pop("seconds_max")
    c = compare.compare(old, new)
    ours = next(r for r in c["rows"] if r["label"].endswith("(cnncore)"))
    assert ours["new_in_old"] is True and ours["old_in_new"] is None
    assert c["summary"]["with_spread"] == 2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"isa_flags": ["avx", "avx2", "fma", "avx512f"]}, "different ISA flags"),
        ({"cpu_family": 26}, "different CPU family"),
        ({"processor": "Intel Xeon"}, "different CPU model"),
        ({"threads": 4}, "different threads"),
        ({"torch": "2.14.0"}, "different PyTorch"),
        ({"import_order": ["torch", "cnncore_kernels"]}, "different import order"),
        (
            {"thread_settings": {"OMP_NUM_THREADS": "1", "libgomp_wait_policy": "PASSIVE"}},
            "different thread setting OMP_NUM_THREADS",
        ),
        (
            {"libraries": {"threadpools": [{"internal_api": "openblas", "version": "0.3.31"}]}},
            "different BLAS thread pools",
        ),
        ({"load_average_end": 3.5}, "NEW ran under load"),
        ({"peer": {"mode": "shared", "torch_num_threads": 2}}, "different peer mode"),
    ],
)
def test_machine_differences_warn(pair, change, expected):
    old, new = pair
    new["machine"].update(change)
    warnings = compare.compare(old, new)["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith(expected), warnings


def test_committed_results_against_themselves():
    """The real schema: every row of the committed run within its own spread, ratio 1."""
    with open(COMMITTED) as f:
        old = json.load(f)
    c = compare.compare(old, copy.deepcopy(old))
    s = c["summary"]
    n = len(old["throughput"]) + len(old["dense"])
    assert s["rows"] == n and s["with_spread"] == n and s["either"] == n
    assert s["geomean_ratio"] == pytest.approx(1.0)
    # a run compared with itself differs in nothing; only its own load and warnings are reported
    own = ("OLD ran under load", "NEW ran under load", "OLD carries", "NEW carries")
    assert all(w.startswith(own) for w in c["warnings"]), c["warnings"]


def test_cli_flags_a_different_cpu(tmp_path, pair):
    old, new = pair
    new["machine"]["isa_flags"] = ["avx", "avx2", "fma", "avx512f"]
    paths = []
    for name, res in (("old", old), ("new", new)):
        paths.append(str(tmp_path / f"{name}.json"))
        report.write_json(res, paths[-1])
    p = subprocess.run(
        [sys.executable, "-m", "bench", "compare", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert "| conv2d forward 8x64x56x56 K64 k3 (torch) | 20 [19-21] ms | 30 [29-31] ms | 1.50 " in (
        p.stdout
    )
    assert "NEW's median within OLD's spread: 2 of 4" in p.stdout
    assert "warning: different ISA flags" in p.stderr
