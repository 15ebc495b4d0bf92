"""`import cnncore` reaches every subpackage lazily, stays light, and `cnncore.summary` is the
function."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import cnncore

SUBPACKAGES = (
    "checkpoint",
    "data",
    "dense",
    "distributed",
    "functional",
    "models",
    "nn",
    "optim",
    "train",
)


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_import_is_light_and_subpackages_load_on_first_use() -> None:
    # a fresh interpreter: this test process has imported everything already
    got = _run(
        """
        import sys
        import cnncore
        before = {"nn": "cnncore.nn" in sys.modules, "dense": "cnncore.dense" in sys.modules}
        cnncore.nn, cnncore.dense, cnncore.summary
        heavy = sorted(m for m in ("numba", "dask", "matplotlib", "torch", "zarr", "sklearn")
                       if m in sys.modules)
        print(before["nn"], before["dense"], heavy)
        """
    )
    assert got == "False False []"


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackage_is_an_attribute_after_import_cnncore(name: str) -> None:
    got = _run(
        f"""
        import cnncore
        m = cnncore.{name}
        print(m.__name__)
        """
    )
    assert got == f"cnncore.{name}"


def test_dir_lists_the_lazy_names() -> None:
    names = dir(cnncore)
    for name in (*SUBPACKAGES, "summary", "print_summary", "cuda_available", "__version__"):
        assert name in names
    assert set(cnncore.__all__) <= set(names)


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        cnncore.no_such_thing  # noqa: B018


def test_summary_is_the_function_and_defaults_to_the_models_input_shape() -> None:
    from cnncore import models, summary
    from cnncore.summarize import summary as summary_fn

    assert summary is summary_fn is cnncore.summary
    net = models.toy15()
    rows = cnncore.summary(net)
    assert rows == summary_fn(net, net.input_shape)
    assert [r["name"] for r in rows] == [name for name, _ in net.named_children()]
    assert rows[-1]["output_shape"] == (2, 1, 1)


def test_summary_without_input_shape_anywhere_is_refused() -> None:
    net = cnncore.nn.Sequential(cnncore.nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match="input_shape"):
        cnncore.summary(net)


def test_print_summary_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    cnncore.print_summary(cnncore.models.toy15())
    out = capsys.readouterr().out
    assert "conv1" in out and "total" in out


def test_every_model_builder_sets_input_shape() -> None:
    from cnncore import models

    builders = [getattr(models, n) for n in models.__all__ if n.islower() and n != "pixel_net"]
    for build in builders:
        net = build()
        assert len(net.input_shape) == 3, build.__name__
        cnncore.summary(net)  # no argument needed
