"""Loaded by pytest before any test or benchmark module: import cnncore_kernels first, so its
OpenMP wait policy is in place before PyTorch (an oracle and peer here) loads its OpenMP runtime.

Collection: ``pytest --benchmark-only`` collects only the benchmark suites (bench/), and a plain
``pytest`` (benchmarks skipped by pyproject's ``--benchmark-skip``) only the tests (tests/), so
neither prints pages of skip markers for the other; a folder named on the command line is always
collected."""

from pathlib import Path

import cnncore_kernels  # noqa: F401

ROOT = Path(__file__).resolve().parent


def _named(config, folder: Path) -> bool:
    """Whether a path on the command line lies inside ``folder`` (or contains it); the default
    ``testpaths`` do not count."""
    import pytest

    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return False
    for arg in config.args:
        p = Path(arg.split("::")[0]).resolve()
        if p == folder or folder in p.parents or p in folder.parents and p != ROOT:
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    only = config.getoption("benchmark_only", default=False)
    skip = config.getoption("benchmark_skip", default=False)
    for folder, ignore in ((ROOT / "tests", only), (ROOT / "bench", skip and not only)):
        inside = collection_path == folder or folder in collection_path.parents
        if ignore and inside and not _named(config, folder):
            return True
    return None
