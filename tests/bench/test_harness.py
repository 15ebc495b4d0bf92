"""The benchmark harness: ``python -m bench --quick`` end to end, ``python -m bench plot`` on a real
pytest-benchmark JSON, the pytest-benchmark wiring (``--benchmark-only`` runs the suites, the peer
rows skip without PyTorch) and the arithmetic of the report."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import report  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("speedup_vs_image_size.png", "speedup_vs_patch_size.png", "kernel_throughput.png")
HAVE_TORCH = __import__("importlib").util.find_spec("torch") is not None
HAVE_ORT = all(
    __import__("importlib").util.find_spec(m) is not None for m in ("onnx", "onnxruntime")
)


def _run(args: list[str], cwd: str = ROOT, timeout: float = 180, env: dict | None = None):
    e = dict(os.environ, **(env or {}))
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # for the pytest subprocesses, see _pytest
    p = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e
    )
    assert p.returncode == 0, f"{args} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def _pytest(args: str, cwd: str = ROOT):
    """pytest in a subprocess with only the pytest-benchmark plugin (the other installed plugins
    take seconds to import)."""
    plugins = ["-p", "no:cacheprovider", "-p", "pytest_benchmark.plugin"]
    return _run(["-m", "pytest", *plugins, *args.split()], cwd=cwd)


def _check_png(path: str) -> None:
    import matplotlib.image as mpimg

    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE, path
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, (path, img.shape)
    assert float(img[..., :3].std()) > 0.01, f"{path} is blank"
    assert os.path.getsize(path) < 400_000, f"{path} is not small"


# --------------------------------------------------------------------------------------------
# the main job, end to end
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bench_out"))
    # one thread: this checks what the harness writes, not speed, and must stay fast on a
    # shared machine where threaded BLAS calls can stall behind other processes
    single = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    args = ["-m", "bench", "--quick", "--sizes", "12", "--out", out, "--no-progress"]
    args += ["--peer-process", "own"]  # one peer process: the test checks plumbing, not speed
    p = _run(args, env=single)
    with open(os.path.join(out, "results.json")) as f:
        return out, json.load(f), p.stdout


def test_quick_sweep_writes_plots(quick_run):
    out, _, _ = quick_run
    for name in PLOTS:
        _check_png(os.path.join(out, name))
        with open(os.path.join(out, name.replace(".png", ".svg"))) as f:
            assert "<svg" in f.read(2000)


def test_quick_sweep_json(quick_run):
    _, res, _ = quick_run
    assert res["schema"] == report.SCHEMA
    assert set(res) >= {"machine", "reference", "throughput", "dense", "speedups", "notes"}
    assert res["reference"]["sgemm_gflops"] > 0 and res["reference"]["copy_gbs"] > 0
    assert res["machine"]["threads"] == 1
    kernels = {(r["kernel"], r["direction"], r["impl"]) for r in res["throughput"]}
    for d in ("forward", "backward"):
        assert ("conv2d", d, "cnncore") in kernels
    for r in res["throughput"]:
        value, unit = report.rate(r)
        work = r["flops"] if unit == "GFLOP/s" else r["bytes"]
        assert r["seconds"] > 0 and math.isclose(value, work / r["seconds"] / 1e9)
        ceiling = res["reference"]["sgemm_gflops" if unit == "GFLOP/s" else "copy_gbs"]
        assert math.isclose(r["fraction_of_peak"], value / ceiling)
    # every network x size x pass x method, measured, with the rounds' spread
    peers = {"torch_patchwise", "torch_dsparse"} if HAVE_TORCH else set()
    cells = {(r["network"], r["image_size"], r["pass"], r["method"]) for r in res["dense"]}
    expected = set()
    for n in ("toy15", "pixel65"):
        for s in (12,):
            for p in ("forward", "backward"):
                more = {"onnx_dsparse"} if HAVE_ORT and p == "forward" else set()
                expected |= {(n, s, p, m) for m in {"patchwise", "fcn", "dsparse"} | peers | more}
    main = set(expected)
    for p in ("forward", "backward"):  # the peers-only group: pixel65 at 20x20, no patch scanning
        more = {"onnx_dsparse"} if HAVE_ORT and p == "forward" else set()
        expected |= {
            ("pixel65", 20, p, m) for m in {"dsparse"} | (peers - {"torch_patchwise"}) | more
        }
    assert cells == expected
    for r in res["dense"]:
        assert r["seconds"] > 0 and r["ops_per_pixel"] > 0 and r["pixels"] == r["image_size"] ** 2
        assert r["seconds_min"] <= r["seconds"] <= r["seconds_max"] and r["rounds"] >= 2
        if r["method"] in ("patchwise", "torch_patchwise"):
            assert 1 <= r["timed_pixels"] <= r["pixels"]
    assert len(res["speedups"]) == len(main) - 2 * 2  # all but patch scanning itself
    for s in res["speedups"]:
        assert s["speedup"] > 0 and s["theory"] >= 1
        assert s["speedup_min"] <= s["speedup"] <= s["speedup_max"]
        assert math.isclose(s["efficiency"], s["speedup"] / s["theory"])
        assert s["patchwise_scaled"] == (s["patchwise_timed_pixels"] < s["pixels"])
    # kernels: interleaved rounds, the algorithm of every conv row, the training step
    for r in res["throughput"]:
        assert r["seconds_min"] <= r["seconds"] <= r["seconds_max"] and r["rounds"] == 3
        if r["kernel"] == "conv2d" and r["impl"] == "cnncore":
            assert r["algorithm"]
    assert {(r["kernel"], r["direction"]) for r in res["throughput"]} >= {
        ("cifar_net", "train step"),
        ("cifar_net", "forward"),
    }
    # what the numbers were measured on
    m = res["machine"]
    assert m["import_order"][0] == "cnncore_kernels" and m["load_average_start"] is not None
    assert "threadpools" in m["libraries"] and m["thread_settings"]["threads"] == 1
    assert res["reference"]["fma_peak"]["flops_per_cycle_per_core"] in (8, 16, 32, 64)
    assert len(res["reference"]["sgemm_readings"]) == 3  # start, after kernels, after dense
    fma = res["reference"]["fma_peak"]
    assert fma["gflops"] == res["reference"]["fma_gflops"] > 0 and fma["basis"]
    assert fma["measured"] == (__import__("bench.fma").fma.compiler() is not None)
    assert res["date"].endswith("UTC")
    if HAVE_TORCH:  # the peer ran in its own process, torch first, libgomp's default policy
        assert m["peer"]["mode"].startswith("own") and m["peer"]["import_order"][0] == "torch"
        torch_rows = [r for r in res["throughput"] if r["impl"] == "torch"]
        torch_rows += [r for r in res["dense"] if r["method"].startswith("torch")]
        assert torch_rows and all("peer_wait_policy" not in r for r in torch_rows)
        assert m["peer"]["torch_num_threads"] == 1


def test_quick_sweep_gives_a_readme_block_and_compares_with_itself(quick_run):
    from bench import compare, readme

    _, res, _ = quick_run
    block = readme.block(res)
    assert "**Quick mode:**" in block and res["date"] in block
    table = [line for line in block.splitlines() if line.startswith("| ")]
    assert any(line.startswith("| conv2d forward") for line in table)
    assert any(line.startswith("| d-sparse over our patch scanning") for line in table)
    c = compare.compare(res, res)
    assert c["summary"]["rows"] == len(res["throughput"]) + len(res["dense"]) > 0
    assert c["summary"]["either"] == c["summary"]["rows"]
    assert not [w for w in c["warnings"] if w.startswith("different")]  # load ones may appear


def test_quick_sweep_prints_speedup_beside_theory(quick_run):
    out, res, stdout = quick_run
    assert "| speedup (measured) | theory (ops/pixel) |" in stdout
    with open(os.path.join(out, "results.md")) as f:
        md = f.read()
    for s in res["speedups"]:
        line = (
            f"| {s['network']} | {s['patch_size']} | {s['image_size']}x{s['image_size']} "
            f"| {s['pass']} | {s['method']} | {report.times(s['speedup'])} "
            f"[{report.times(s['speedup_min'])}-{report.times(s['speedup_max'])}] "
            f"| {report.times(s['theory'])} | {s['efficiency']:.2f} |"
        )
        assert line in md
    assert "PyTorch/ours" in md and "sgemm peak" in md
    if HAVE_TORCH:
        assert "## d-sparse against PyTorch and ONNX Runtime" in md and "| pixel65 | 20x20 |" in md


# --------------------------------------------------------------------------------------------
# plotting a saved pytest-benchmark JSON
_SUITE = """
import pytest

KERNELS = [("conv2d", "flops", 2e6), ("max_pool2d", "bytes", 1e6)]

@pytest.mark.parametrize("impl", ["cnncore", "torch"])
@pytest.mark.parametrize("kernel,unit,work", KERNELS)
def test_kernel(benchmark, kernel, unit, work, impl):
    benchmark.group = kernel
    benchmark(sum, range(200 if impl == "cnncore" else 400))
    benchmark.extra_info.update(kernel=kernel, direction="forward", config="tiny", impl=impl,
                                **{unit: work})

@pytest.mark.parametrize("n", [64])
def test_sgemm(benchmark, n):
    benchmark(sum, range(100))
    benchmark.extra_info.update(kernel="sgemm", direction="forward", config=str(n),
                                impl="numpy", flops=2e7)

@pytest.mark.parametrize("network,patch", [("tiny", 9), ("small", 17)])
@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("method,n", [("patchwise", 3000), ("fcn", 300), ("dsparse", 30)])
@pytest.mark.parametrize("pss", ["forward", "backward"])
def test_dense(benchmark, network, patch, size, method, n, pss):
    benchmark(sum, range(n * size))
    benchmark.extra_info.update(network=network, patch_size=patch, image_size=size,
                                method=method, **{"pass": pss}, ops_per_pixel=n * patch)
"""


def test_plot_saved_pytest_benchmark_json(tmp_path):
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(_SUITE))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    _pytest(
        "-q test_suite.py --benchmark-only --benchmark-json results.json "
        "--benchmark-min-rounds 1 --benchmark-max-time 0.001 --benchmark-disable-gc",
        cwd=str(tmp_path),
    )
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["benchmarks"]) == 4 + 1 + 24
    res = report.from_pytest_benchmark(data)
    assert len(res["throughput"]) == 4 and len(res["dense"]) == 24
    sg = next(
        b
        for b in data["benchmarks"]
        if b["extra_info"]["kernel"] == "sgemm"
        if "kernel" in b["extra_info"]
    )
    assert math.isclose(res["reference"]["sgemm_gflops"], 2e7 / sg["stats"]["min"] / 1e9)
    assert len(res["speedups"]) == 2 * 2 * 2 * 2
    for s in res["speedups"]:
        assert s["theory"] == pytest.approx(3000 / (300 if s["method"] == "fcn" else 30))

    out = tmp_path / "plots"
    p = _run(["-m", "bench", "plot", str(tmp_path / "results.json"), "--out", str(out)])
    for name in PLOTS:
        _check_png(str(out / name))
    assert "| speedup (measured) |" in p.stdout and "| kernel | pass |" in p.stdout
    saved = json.loads((out / "results.json").read_text())
    assert saved["schema"] == report.SCHEMA and len(saved["speedups"]) == 16


def test_plot_refuses_other_json(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="pytest-benchmark"):
        report.load_results(str(bad))


# --------------------------------------------------------------------------------------------
# the pytest-benchmark wiring of bench/
def test_collection_splits_tests_and_benchmarks():
    # --benchmark-only collects the suites only; a plain run only the tests (no skip pages)
    ids = _pytest("--benchmark-only --collect-only -q").stdout.split()
    assert any(i.startswith("bench/bench_conv.py::") for i in ids)
    assert not any(i.startswith("tests/") for i in ids)
    ids = _pytest("--collect-only -q tests/bench").stdout.split()
    assert any(i.startswith("tests/bench/test_harness.py::") for i in ids)
    assert not any(i.startswith("bench/") for i in ids)


def test_benchmark_only_collects_every_bench_suite():
    # --benchmark-only overrides the --benchmark-skip of pyproject's addopts
    p = _pytest("--benchmark-only --collect-only -q bench")
    ids = p.stdout.split()
    suites = sorted(f for f in os.listdir(os.path.join(ROOT, "bench")) if f.startswith("bench_"))
    assert "bench_conv.py" in suites and "bench_reference.py" in suites
    for suite in suites:
        assert any(i.startswith(f"bench/{suite}::") for i in ids), suite
    assert any(i.startswith("bench/bench_conv.py::test_conv2d[backward-") for i in ids)


_THROUGHPUT_SUITE = """
pytest_plugins = ["bench.conftest"]

def test_rate(benchmark, throughput):
    benchmark.group = "tiny"
    benchmark(sum, range(1000))
    throughput(benchmark, kernel="sum", direction="forward", config="1000", impl="cnncore",
               flops=1e3, sgemm_peak_gflops=100.0)
"""


def test_throughput_fixture_fills_extra_info_and_prints_table(tmp_path):
    (tmp_path / "test_t.py").write_text(_THROUGHPUT_SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    out = tmp_path / "t.json"
    p = _pytest(
        f"test_t.py --benchmark-only --benchmark-json {out} --benchmark-max-time 0.001",
        cwd=str(tmp_path),
    )
    assert "throughput (fastest round)" in p.stdout and "| sum | forward | 1000 |" in p.stdout
    (b,) = json.loads(out.read_text())["benchmarks"]
    info = b["extra_info"]
    assert info["impl"] == "cnncore" and info["sgemm_peak_gflops"] == 100.0
    assert math.isclose(info["gflops"], 1e3 / b["stats"]["min"] / 1e9)
    assert math.isclose(info["fraction_of_peak"], info["gflops"] / 100.0)


def test_without_torch_the_peer_rows_skip_with_reason():
    code = (
        "import sys; sys.modules['torch'] = None; import pytest; "
        "sys.exit(pytest.main(['bench/bench_conv.py', '--benchmark-only', '-k', "
        "'torch and forward and 8x128x28x28', '-rs', '-p', 'pytest_benchmark.plugin']))"
    )
    p = _run(["-c", code])
    assert "1 skipped" in p.stdout and "PyTorch is not installed" in p.stdout


# --------------------------------------------------------------------------------------------
# report arithmetic, on numbers given here
def test_speedups_and_tables():
    rows = [
        {
            "network": "n",
            "patch_size": 9,
            "image_size": 32,
            "pass": "forward",
            "method": "patchwise",
            "seconds": 12.0,
            "pixels": 1024,
            "timed_pixels": 64,
            "ops_per_pixel": 900.0,
        },
        {
            "network": "n",
            "patch_size": 9,
            "image_size": 32,
            "pass": "forward",
            "method": "dsparse",
            "seconds": 0.5,
            "pixels": 1024,
            "ops_per_pixel": 30.0,
        },
        {
            "network": "n",
            "patch_size": 9,
            "image_size": 32,
            "pass": "backward",
            "method": "dsparse",
            "seconds": 0.5,
            "pixels": 1024,
            "ops_per_pixel": 30.0,
        },
    ]
    (s,) = report.speedups(rows)  # no patch scanning for the backward: no speedup row
    assert s["speedup"] == 24.0 and s["theory"] == 30.0 and s["patchwise_scaled"]
    md = report.speedup_table([s])
    assert "| n | 9 | 32x32 | forward | dsparse | 24x [24x-24x] | 30x | 0.80 | - | sampled 64" in md

    ours = report.throughput_info(
        0.02, "conv2d", "forward", "c", "cnncore", flops=4e9, sgemm_peak_gflops=400.0
    )
    peer = report.throughput_info(0.01, "conv2d", "forward", "c", "torch", flops=4e9)
    assert ours["gflops"] == pytest.approx(200.0) and ours["fraction_of_peak"] == 0.5
    table = report.throughput_table([ours, peer])
    assert (
        "| conv2d | forward | c | - | 20.0 | 10.0 | 0.50 | 200.0 GFLOP/s | 400.0 GFLOP/s | 50% of"
        in table
    )
    assert "geometric mean of PyTorch time / our time = 0.50" in table
    with pytest.raises(ValueError, match="exactly one"):
        report.throughput_info(1.0, "k", "forward", "c", "cnncore")


def test_merge_recomputes_speedups_and_keeps_best_reference():
    def run(net, patch, t_patch, t_dense, peak):
        res = report.new_results(net)
        res["reference"]["sgemm_gflops"] = peak
        for method, t in (("patchwise", t_patch), ("dsparse", t_dense)):
            res["dense"].append(
                {
                    "network": net,
                    "patch_size": patch,
                    "image_size": 64,
                    "pass": "forward",
                    "method": method,
                    "seconds": t,
                    "pixels": 4096,
                    "ops_per_pixel": 1.0,
                }
            )
        return res

    merged = report.merge([run("a", 9, 8.0, 2.0, 100.0), run("b", 17, 9.0, 0.5, 120.0)])
    assert merged["reference"]["sgemm_gflops"] == 120.0
    assert {(s["network"], s["speedup"]) for s in merged["speedups"]} == {("a", 4.0), ("b", 18.0)}


def test_networks_by_name():
    from bench import networks
    from cnncore.dense import analyze

    net = networks.build("pixel321")
    plan = analyze(net, 321)
    assert plan.receptive_field == (321, 321) and plan.stride == (64, 64)
    assert net.patch_size == 321 and not net.training
    for name in ("toy15", "pixel65", "pixel193"):
        assert networks.build(name).patch_size == int(
            name.removeprefix("pixel").removeprefix("toy")
        )
    with pytest.raises(ValueError, match="pixel321"):
        networks.build("pixel100")


# --------------------------------------------------------------------------------------------
# interleaved rounds, the peer process, the baselines' networks
class _Fake:
    def __init__(self, per_call: float, log: list, name: str) -> None:
        self.per_call, self.log, self.name = per_call, log, name

    def time(self, k: int) -> float:
        self.log.append((self.name, k))
        return self.per_call * k


def test_interleave_alternates_and_summarises():
    from bench import rounds

    log: list = []
    res = rounds.interleave(
        {"ours": _Fake(0.01, log, "ours"), "peer": _Fake(0.001, log, "peer")}, 4, min_round=0.05
    )
    timed = [name for name, k in log[2:]]  # after one calibration call each
    assert timed == ["ours", "peer", "peer", "ours", "ours", "peer", "peer", "ours"]
    assert res["ours"]["calls"] == 5 and res["peer"]["calls"] == 50 and res["ours"]["rounds"] == 4
    for r in res.values():
        assert r["min"] <= r["median"] <= r["max"] and len(r["times"]) == 4
    with pytest.raises(ValueError, match="rounds"):
        rounds.interleave({"a": _Fake(1, [], "a")}, 0)


@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not installed")
def test_peer_process_runs_torch_first_with_libgomps_default_policy():
    from bench import peer

    p = peer.PeerProcess(threads=1)
    try:
        info = p.info()
        assert info["import_order"][0] == "torch"
        # libgomp's default spin count, said explicitly, and no throttle of ours
        assert info["libgomp_wait_policy"] == "GOMP_SPINCOUNT=300000 (set by the user)"
        assert info["torch_num_threads"] == 1
        p.prepare({"kind": "conv", "shape": (1, 2, 6, 6, 2, 3, 1, 1, 1), "direction": "forward"})
        assert p.time(3) > 0
        with pytest.raises(RuntimeError, match="unknown case kind"):
            p.prepare({"kind": "nope"})
    finally:
        p.close()
    assert p.proc.returncode == 0


@pytest.mark.skipif(not (HAVE_TORCH and HAVE_ORT), reason="PyTorch or ONNX Runtime missing")
@pytest.mark.parametrize("network", ["toy15", "pixel65"])
def test_dense_baselines_compute_our_scores(network):
    import numpy as np
    import torch
    from numpy.lib.stride_tricks import sliding_window_view

    from bench import dense_peers, networks
    from cnncore import dense
    from cnncore.dense.tiling import block_ranges, window

    model = networks.build(network)
    P = model.patch_size
    plan = dense.analyze(model, P)
    x = np.random.default_rng(0).standard_normal((1, 3, 11, 13), dtype=np.float32)
    ours = dense.predict(model, x, P, "dsparse")
    scale = float(np.abs(ours).max())
    with torch.no_grad():
        theirs = dense_peers.torch_dense(torch, plan, inplace=True)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(theirs, ours, atol=1e-5 * scale, rtol=1e-4)
    np.testing.assert_allclose(
        dense_peers.onnx_dense(plan, 1)(x), ours, atol=1e-5 * scale, rtol=1e-4
    )
    # patch scanning in PyTorch: the classifier on the patches of a few pixels
    net = dense_peers.torch_classifier(torch, model)
    block = window(x, *block_ranges((11, 13), plan.halo("patchwise")))
    win = sliding_window_view(block, plan.patch, axis=(2, 3))
    with torch.no_grad():
        for i, j in ((0, 0), (5, 7), (10, 12)):
            s = net(torch.from_numpy(np.ascontiguousarray(win[0, :, i, j][None]))).numpy()
            s = s.reshape(-1)  # toy15 ends in convolutions: (1, 2, 1, 1)
            np.testing.assert_allclose(s, ours[0, :, i, j], atol=1e-5 * scale, rtol=1e-4)


@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not installed")
def test_cifar_net_has_the_same_weights_on_both_sides():
    import numpy as np
    import torch

    from bench import cifar
    from cnncore import nn

    w = cifar.weights(0)
    x, _ = cifar.data(3)
    with nn.no_grad():
        ours = cifar.cnncore_model(w).eval()(x)
    theirs = cifar.torch_model(torch, w).eval()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-4)
    assert cifar.flops(2, "train") == 3 * cifar.flops(2, "inference") > 0


def test_fma_peak_from_isa_and_clock():
    from bench import machine

    zen4 = {"vendor": "AuthenticAMD", "family": 25, "flags": ["avx2", "fma", "avx512f"]}
    zen5 = dict(zen4, family=26)
    assert machine.fp32_flops_per_cycle(zen4)[0] == 32
    assert machine.fp32_flops_per_cycle(zen5)[0] == 64
    assert machine.fp32_flops_per_cycle({"flags": ["avx", "avx2", "fma"]})[0] == 32
    assert machine.fp32_flops_per_cycle({"flags": ["avx"]})[0] == 16
    f = machine.fma_peak(2, clock_ghz=3.0)
    assert f["gflops"] == 2 * f["flops_per_cycle_per_core"] * 3.0
    assert machine.load_warning(5.0, 2, "start") and machine.load_warning(1.0, 2, "end") is None


def test_plots_mark_extrapolated_points_and_join_only_one_family(tmp_path):
    from bench import plots

    def row(net, patch, size, method, pss="forward", sampled=True):
        return {"network": net, "patch_size": patch, "image_size": size, "pass": pss,
                "method": method, "speedup": 10.0 + patch / 10, "speedup_min": 9.0,
                "speedup_max": 12.0 + patch / 10, "theory": 20.0, "efficiency": 0.5,
                "patchwise_scaled": sampled, "fcn_scaled": method == "fcn",
                "pixels": 64}  # fmt: skip

    rows = [row(n, p, 64, m) for n, p in (("toy15", 15), ("pixel65", 65), ("pixel97", 97),
            ("pixel129", 129)) for m in ("dsparse", "fcn")]  # fmt: skip
    text = plots.caption(rows)
    assert "extrapolated" in text and "pixel97 64" in text and "FCN timed on a sample" in text
    assert plots.family("pixel129") == plots.family("pixel97") != plots.family("pixel65")
    fig = plots.plot_patch_size({"speedups": rows})
    ax = fig.axes[0]
    # family lines: segments between pixel97 and pixel129 only; toy15 and pixel65 lone markers
    segments = [
        ln for ln in ax.get_lines() if len(ln.get_xdata()) == 2 and ln.get_linestyle() != ":"
    ]
    assert segments and all(set(ln.get_xdata()) == {97, 129} for ln in segments)
    assert all(ln.get_linestyle() == "--" for ln in segments)  # extrapolated: dashed
    paths = plots.plot_all({"speedups": rows}, str(tmp_path))
    assert {os.path.basename(p) for p in paths} >= {"speedup_vs_patch_size.svg",
                                                    "speedup_vs_image_size.png"}  # fmt: skip


def test_merge_policies_keeps_the_faster():
    from bench.peer import merge_policies

    t = merge_policies(
        {
            "ours": {"median": 1.0},
            "torch@default": {"median": 3.0},
            "torch@passive": {"median": 2.0},
        }
    )
    assert t["ours"] == {"median": 1.0}
    assert t["torch"]["median"] == 2.0 and t["torch"]["peer_wait_policy"] == "passive"
    assert t["torch"]["other_policy_median"] == 3.0


def test_side_by_side_summary_ratios():
    from types import SimpleNamespace

    from bench.conftest import side_by_side

    def b(group, impl, median):
        return SimpleNamespace(group=group, name=impl, params={"impl": impl}, extra_info={},
                               stats=SimpleNamespace(median=median))  # fmt: skip

    (line,) = side_by_side([b("g", "cnncore", 0.010), b("g", "torch", 0.025)])
    assert line == "g: cnncore 10 ms | torch 25 ms (2.50x ours)"


def test_gpu_command_plumbing_under_the_simulator(tmp_path):
    out = tmp_path / "gpu"
    p = _run(
        ["-m", "bench", "gpu", "--quick", "--out", str(out), "--tests",
         "tests/kernels/cuda/test_checks.py", "-k", "max_pool2d and forward and cnncore"],
        env={"NUMBA_ENABLE_CUDASIM": "1"},
    )  # fmt: skip
    rec = json.loads((out / "gpu.json").read_text())
    assert (
        rec["simulator"] and rec["tests"]["returncode"] == 0 and "passed" in rec["tests"]["summary"]
    )
    assert rec["benchmarks"]["returncode"] == 0 and "card:" in p.stdout
    res = json.loads((out / "results.json").read_text())
    (row,) = [r for r in res["throughput"] if r["impl"] == "cnncore"]
    assert row["kernel"] == "max_pool2d (simulator)" and row["gbs"] > 0
    _check_png(str(out / "kernel_throughput.png"))


def test_notes_name_rows_above_a_ceiling():
    res = report.new_results("t")
    res["reference"]["fma_gflops"] = 330.0
    res["throughput"] = [
        report.throughput_info(
            0.001, "conv2d", "forward", "c", "torch", flops=3e8, sgemm_peak_gflops=200.0
        ),
        report.throughput_info(
            0.002, "conv2d", "forward", "c", "cnncore", flops=3e8, sgemm_peak_gflops=200.0
        ),
    ]
    (note,) = [n for n in report.standard_notes(res, 5, 3, 8) if n.startswith("above")]
    assert "conv2d forward c (torch, 150%)" in note and "cnncore" not in note and "330" in note
