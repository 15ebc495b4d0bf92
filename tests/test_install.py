"""The installed package seen from outside the checkout: every source module is shipped and imports.

Tests that run from the repository root import the source tree, so they never see a packaging
error (a subpackage missing from ``setup.py`` imports fine from the checkout and fails for every
user).  These tests (1) build the pure-Python part of the distribution with ``setup.py build_py``
into a temporary folder and compare it with the source files, and (2) import every source module
in a fresh interpreter whose working directory is outside the checkout and whose ``sys.path``
ignores ``PYTHONPATH`` (``python -I``): the modules must come from the installed distribution
(the checkout only when it is an editable install of this very checkout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# source folder -> import name (setup.py installs kernels/ as cnncore_kernels)
PACKAGES = {"cnncore": "cnncore", "kernels": "cnncore_kernels"}


def source_modules() -> dict[str, str]:
    """Every module of the source tree: dotted import name -> path relative to the checkout
    (``.py`` files, and ``.pyx`` files, which build to extensions of the same name)."""
    modules = {}
    for folder, name in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".pyx") or "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([name, *parts])] = str(path.relative_to(ROOT))
    return modules


def test_setup_ships_every_source_module(tmp_path):
    """``setup.py build_py`` (the pure-Python files of a wheel) holds every ``.py`` module of
    ``cnncore/`` and ``kernels/``: a package left out of ``setup.py`` fails here."""
    env = dict(os.environ, CNNCORE_BUILD_ONLY="none")  # no extension to cythonize or compile
    build = tmp_path / "lib"
    run = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(build)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    shipped = {
        str(p.relative_to(build).with_suffix("")).replace(os.sep, ".").removesuffix(".__init__")
        for p in build.rglob("*.py")
    }
    wanted = {name for name, path in source_modules().items() if path.endswith(".py")}
    assert not wanted - shipped, f"left out of the distribution: {sorted(wanted - shipped)}"


def test_every_module_imports_from_outside_the_checkout(tmp_path):
    """Each module of the source tree imports in a fresh ``python -I`` run from a folder outside
    the checkout; installed normally, none of them is read from the checkout."""
    names = sorted(source_modules())
    code = textwrap.dedent(
        """
        import importlib, importlib.metadata, json, sys
        files = {n: importlib.import_module(n).__file__ for n in sys.argv[1:]}
        # PEP 610: pip records an editable install in direct_url.json
        url = json.loads(importlib.metadata.distribution("cnncore").read_text("direct_url.json")
                         or "{}")
        print(json.dumps([files, url.get("dir_info", {}).get("editable", False)]))
        """
    )
    run = subprocess.run(
        [sys.executable, "-I", "-c", code, *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    files, editable = json.loads(run.stdout.strip().splitlines()[-1])
    assert sorted(files) == names
    in_checkout = sorted(n for n, f in files.items() if Path(f).resolve().is_relative_to(ROOT))
    if editable:
        assert in_checkout == names, "the editable install points at another checkout"
    else:
        assert not in_checkout, f"imported from the checkout, not the installation: {in_checkout}"
