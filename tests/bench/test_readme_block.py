"""The README's "Latest results" block is what ``python -m bench readme`` gives for the committed
results.json, and the generator copes with any results.json a sweep writes."""

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

from bench import readme, report  # noqa: E402

COMMITTED = os.path.join(ROOT, "bench", "results", "results.json")
README = os.path.join(ROOT, "README.md")


@pytest.fixture(scope="module")
def committed():
    with open(COMMITTED) as f:
        return json.load(f)


def test_readme_block_is_generated_from_the_committed_results(committed):
    with open(README) as f:
        text = f.read()
    assert readme.readme_block(text) == readme.block(committed), (
        "README.md's results block is stale: python -m bench readme "
        "bench/results/results.json --write README.md"
    )


def _table(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.startswith("| ") and "what" not in line]


def test_every_measured_figure_has_a_spread(committed):
    for line in _table(readme.block(committed)):
        result = line.split(" | ")[1]
        assert "[" in result and "no spread" not in result, line


def test_figures_follow_the_rows(committed):
    res = copy.deepcopy(committed)
    head = [
        r for r in res["throughput"]
        if r["config"] == readme.HEAD_CONFIG and r["direction"] == "forward"
    ]  # fmt: skip
    ours = next(r for r in head if r["impl"] == "cnncore")
    torch = next(r for r in head if r["impl"] == "torch")
    ours.update(seconds=0.1, seconds_min=0.09, seconds_max=0.125)
    torch.update(seconds=0.3, seconds_min=0.25, seconds_max=0.36)
    line = next(x for x in _table(readme.block(res)) if "dilated-8 head" in x)
    assert "forward 100 [90-125] ms against 300 [250-360] ms: 3.00 [2.00-4.00]" in line


def test_ratio_and_geomean_bounds():
    peer = {"seconds": 4.0, "seconds_min": 3.0, "seconds_max": 6.0}
    ours = {"seconds": 2.0, "seconds_min": 1.5, "seconds_max": 3.0}
    assert readme.ratio(peer, ours) == (2.0, 1.0, 4.0)
    v, lo, hi = readme.geomean([(2.0, 1.0, 4.0), (8.0, 4.0, 16.0)])
    assert (v, lo, hi) == pytest.approx((4.0, 2.0, 8.0))
    assert readme.geomean([(2.0, None, None), (8.0, 1.0, 9.0)]) == (pytest.approx(4.0), None, None)


@pytest.mark.parametrize("drop", ["dense", "throughput", "peers", "spreads", "pooling"])
def test_any_sweep_gives_a_block(committed, drop):
    res = copy.deepcopy(committed)
    if drop == "dense":
        res["dense"], res["speedups"] = [], []
    elif drop == "throughput":
        res["throughput"] = []
    elif drop == "peers":
        res["throughput"] = [r for r in res["throughput"] if r["impl"] != "torch"]
        res["dense"] = [r for r in res["dense"] if not r["method"].startswith(("torch", "onnx"))]
        res["speedups"] = report.speedups(res["dense"])
    elif drop == "spreads":
        for r in res["throughput"] + res["dense"]:
            r.pop("seconds_min", None), r.pop("seconds_max", None)
        res["speedups"] = report.speedups(res["dense"])
    elif drop == "pooling":
        res["throughput"] = [r for r in res["throughput"] if r["kernel"] != "max_pool2d"]
    block = readme.block(res)
    assert block.startswith(readme.BEGIN) and block.endswith(readme.END + "\n")
    table = "\n".join(_table(block))
    assert ("conv2d forward" in table) == (drop not in ("throughput", "peers"))
    assert ("d-sparse over our patch scanning" in table) == (drop != "dense")
    assert ("max_pool2d" in table) == (drop not in ("throughput", "peers", "pooling"))
    if drop == "spreads":
        assert "no spread recorded" in table


def test_cli_write_and_check(tmp_path, committed):
    path = tmp_path / "README.md"
    path.write_text(f"# x\n\n{readme.BEGIN}\nold\n{readme.END}\n\nafter\n")

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "bench", "readme", COMMITTED, *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert cli("--check", str(path)).returncode == 1
    assert cli("--write", str(path)).returncode == 0
    text = path.read_text()
    assert text.startswith("# x\n\n") and text.endswith("\n\nafter\n")
    assert readme.readme_block(text) == readme.block(committed)
    assert cli("--check", str(path)).returncode == 0
    printed = cli()
    assert printed.returncode == 0 and printed.stdout == readme.block(committed)
