"""Per-CPU builds of the Cython kernels, chosen at import.

The default build is portable: every extension ``cnncore_kernels._<name>`` is compiled for the
x86-64 baseline (SSE2, runs on any x86-64 CPU), and again for the levels x86-64-v3 (AVX2, FMA) and
x86-64-v4 (AVX-512) into ``_isa/x86_64_v3/`` and ``_isa/x86_64_v4/`` beside this file.  The same
Cython C file is compiled each time, so every build is the same module (same ``PyInit``, same
names); only the instructions differ.  :func:`install` puts a finder first on ``sys.meta_path``
that loads ``cnncore_kernels._<name>`` from the highest level this CPU runs, asked of the CPU
itself (``_cpu_features``), and falls through to the baseline where no such build exists (a
``CNNCORE_NATIVE=1`` build, other architectures, the CPU below x86-64-v3).

``CNNCORE_KERNELS_ISA`` overrides the choice: ``baseline``, ``x86-64-v3``, ``x86-64-v4`` (or any
folder under ``_isa/``); ``auto`` or unset chooses by the CPU.  Asking for a level above the CPU's
raises ImportError (it would die with "Illegal instruction").
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

from cnncore_kernels import _cpu_features

ENV = "CNNCORE_KERNELS_ISA"
VARIANT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_isa")
# folder name -> x86-64 level it needs
LEVELS = {"x86_64_v3": 3, "x86_64_v4": 4}


def built_variants() -> list[str]:
    """Folders under ``_isa/`` that hold at least one extension, e.g. ``["x86_64_v3", ...]``."""
    if not os.path.isdir(VARIANT_DIR):
        return []
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted(
        entry.name
        for entry in os.scandir(VARIANT_DIR)
        if entry.is_dir() and any(f.endswith(suffixes) for f in os.listdir(entry.path))
    )


def choose(cpu_level: int, variants: list[str], request: str) -> str | None:
    """The folder to load extensions from (None: the baseline next to this file).

    cpu_level: ``_cpu_features.x86_64_level()``; variants: :func:`built_variants`; request: the
    value of ``CNNCORE_KERNELS_ISA`` ("" or "auto": the highest level the CPU runs)."""
    request = request.strip().lower().replace("-", "_")
    if request in ("", "auto"):
        runnable = [v for v in variants if v in LEVELS and LEVELS[v] <= cpu_level]
        return max(runnable, key=LEVELS.__getitem__, default=None)
    if request == "baseline":
        return None
    if request not in variants:
        raise ImportError(f"{ENV}={request!r}: no such build of the kernels; built: {variants}")
    if LEVELS.get(request, 0) > cpu_level:
        raise ImportError(
            f"{ENV}={request!r} needs x86-64 level {LEVELS[request]}, this CPU runs level "
            f"{cpu_level}"
        )
    return request


class _VariantFinder:
    """Finds ``cnncore_kernels.<name>`` as an extension file in one variant folder."""

    def __init__(self, directory: str):
        self.directory = directory

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != "cnncore_kernels":
            return None
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            file = os.path.join(self.directory, name + suffix)
            if os.path.isfile(file):
                loader = importlib.machinery.ExtensionFileLoader(fullname, file)
                return importlib.util.spec_from_file_location(fullname, file, loader=loader)
        return None


_selected: str | None = None


def install() -> None:
    """Choose the build for this CPU and put its finder first on ``sys.meta_path`` (once)."""
    global _selected
    if any(isinstance(f, _VariantFinder) for f in sys.meta_path):
        return
    _selected = choose(_cpu_features.x86_64_level(), built_variants(), os.environ.get(ENV, ""))
    if _selected is not None:
        sys.meta_path.insert(0, _VariantFinder(os.path.join(VARIANT_DIR, _selected)))


def info() -> dict:
    """``{"cpu_level", "built", "selected"}``: the CPU's x86-64 level (0: not x86-64), the
    variant builds present, and the one the kernels load (``"baseline"`` for the plain build)."""
    return {
        "cpu_level": _cpu_features.x86_64_level(),
        "built": built_variants(),
        "selected": _selected or "baseline",
    }
