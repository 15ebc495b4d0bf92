"""Build the Cython kernels of cnncore.

The directory ``kernels/`` is installed as the package ``cnncore_kernels`` (PyPI has an unrelated
``kernels`` package, so the import name must not be ``kernels``).  Every ``kernels/*.pyx`` becomes
an extension ``cnncore_kernels.<name>``.  OpenMP is used only when a test program compiles and links
with ``-fopenmp``; set ``CNNCORE_NO_OPENMP=1`` to build without it.

Instruction sets.  The default build runs on any x86-64 CPU: every extension is compiled for the
x86-64 baseline, and again for x86-64-v3 (AVX2, FMA) and x86-64-v4 (AVX-512) into
``cnncore_kernels/_isa/<level>/``; ``cnncore_kernels.isa`` loads the highest level the CPU runs at
import.  ``CNNCORE_NATIVE=1`` builds once with ``-march=native`` instead (for the machine that
builds it only).  ``CNNCORE_PORTABLE=1`` is accepted and changes nothing (the default is portable).
"""

from __future__ import annotations

import copy
import glob
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

# Per-level builds beside the baseline: folder under cnncore_kernels/_isa/ -> compiler flag.
ISA_VARIANTS = {"x86_64_v3": "-march=x86-64-v3", "x86_64_v4": "-march=x86-64-v4"}
# Extensions built for the baseline only: _cpu_features must load on every CPU (it decides which
# level to load); _blas (the BLAS binding: pointers and thread counts, no loops over data),
# _buffers (the memory handler of buffers.py) and _threads (OpenMP thread control) gain nothing
# from wider vectors, and each variant build costs compile time (the variants load them from the
# baseline, as the finder falls through).
BASELINE_ONLY = {"_buffers", "_cpu_features", "_blas", "_threads"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "0") not in ("", "0")


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; the whole machine's count elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _compiler() -> str | None:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()[0]
    return cc if shutil.which(cc) else None


def compiles(flags: list[str], src: str = "int main(void){return 0;}\n") -> bool:
    """Whether the C compiler builds and links ``src`` with ``flags``."""
    cc = _compiler()
    if cc is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.c")
        with open(path, "w") as f:
            f.write(src)
        cmd = [cc, *flags, path, "-o", os.path.join(tmp, "t")]
        return subprocess.run(cmd, capture_output=True).returncode == 0


def arch_flags() -> tuple[list[str], dict[str, str]]:
    """(flags of the main build, {variant folder: extra flag}).

    Default on x86-64: the baseline ``-march=x86-64`` (SSE2; said explicitly because some
    distributions' compilers default to a higher level) plus the x86-64-v3 and -v4 variants.
    x86-64 rather than x86-64-v2 because, with v3/v4 dispatched, the baseline build only runs on
    CPUs without AVX2, and SSE4.2/POPCNT add little to float loops; v1 keeps "any x86-64 CPU".
    """
    if _flag("CNNCORE_NATIVE"):
        print("cnncore: CNNCORE_NATIVE=1: -march=native, runs on this CPU only", file=sys.stderr)
        return ["-march=native"], {}
    if platform.machine().lower() not in ("x86_64", "amd64") or not compiles(["-march=x86-64"]):
        return [], {}
    variants = {tag: flag for tag, flag in ISA_VARIANTS.items() if compiles([flag])}
    print(f"cnncore: x86-64 baseline + {sorted(variants)} chosen at import", file=sys.stderr)
    return ["-march=x86-64"], variants


class build_ext_per_isa(build_ext):
    """Compiles the extensions in parallel (one job per CPU unless ``-j`` says otherwise), and
    removes variant builds of the extensions built here without variants (a native rebuild), so
    that a stale AVX-512 build is never loaded in place of a fresh one."""

    def finalize_options(self):
        if self.parallel is None:
            self.parallel = _usable_cpus()
        super().finalize_options()

    def run(self):
        # build/ may hold extensions built with other flags (a CNNCORE_NATIVE=1 build, say) that
        # look up to date against their C source: always compile.
        self.force = True
        built = {ext.name for ext in self.extensions}
        for ext in self.extensions:
            package, _, name = ext.name.rpartition(".")
            if package != "cnncore_kernels":
                continue
            for tag in ISA_VARIANTS:
                variant = f"cnncore_kernels._isa.{tag}.{name}"
                path = self.get_ext_fullpath(variant)
                if variant not in built and os.path.exists(path):
                    os.remove(path)
        if self.inplace:  # built in build/ first, then copied to folders that must exist
            build_py = self.get_finalized_command("build_py")
            for ext in self.extensions:
                if getattr(ext, "isa_variant", None):
                    package = ext.name.rpartition(".")[0]
                    os.makedirs(build_py.get_package_dir(package), exist_ok=True)
        super().run()


def openmp_flags() -> list[str]:
    """Return ``["-fopenmp"]`` if a small OpenMP program builds, else ``[]``."""
    if _flag("CNNCORE_NO_OPENMP"):
        print("cnncore: OpenMP disabled by CNNCORE_NO_OPENMP", file=sys.stderr)
        return []
    src = (
        "#include <omp.h>\nint main(void){int n=0;\n"
        "#pragma omp parallel reduction(+:n)\nn+=1;\nreturn n>0?0:1;}\n"
    )
    ok = compiles(["-fopenmp"], src)
    print(f"cnncore: OpenMP {'enabled' if ok else 'not available'}", file=sys.stderr)
    return ["-fopenmp"] if ok else []


def cython_include_path() -> list[str]:
    """Where Cython finds ``cnncore_kernels/*.pxd`` for ``cimport``s between the kernels.

    The extensions are named ``cnncore_kernels.<name>`` but live in ``kernels/``, so Cython looks
    for ``cnncore_kernels/_blas.pxd`` on its include path.  The ``.pxd`` files are copied (with
    their times, so a changed ``.pxd`` still re-cythonizes its users) under ``build/``.
    """
    staged = os.path.join("build", "cython_include", "cnncore_kernels")
    os.makedirs(staged, exist_ok=True)
    open(os.path.join(staged, "__init__.pxd"), "a").close()
    for pxd in glob.glob(os.path.join("kernels", "*.pxd")):
        shutil.copy2(pxd, staged)
    return [os.path.dirname(staged)]


def extensions() -> list[Extension]:
    omp = openmp_flags()
    arch, variants = arch_flags()
    # -g0: no debug information (Python's CFLAGS add -g): the 16 extensions of the default build
    # take 6.5 MB instead of 35 MB, and compile faster.
    compile_args = ["-O3", "-g0", "-fno-math-errno", "-fno-trapping-math"] + omp + arch
    # Developer convenience: CNNCORE_BUILD_ONLY=_conv,_pooling builds just those extensions in place
    # (python setup.py build_ext --inplace), leaving the others as they are.
    only = {s for s in os.environ.get("CNNCORE_BUILD_ONLY", "").split(",") if s}
    exts = []
    for pyx in sorted(glob.glob(os.path.join("kernels", "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        if only and name not in only:
            continue
        exts.append(
            Extension(
                f"cnncore_kernels.{name}",
                [pyx],
                include_dirs=[np.get_include()],
                extra_compile_args=compile_args,
                extra_link_args=omp,
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            )
        )
    exts = cythonize(
        exts,
        nthreads=_usable_cpus(),  # the Cython step, 30 s for all on one core, in parallel too
        include_path=cython_include_path(),
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )
    # The variants compile the same generated C code (same module, same PyInit) with one more
    # -march flag (the last one wins), into cnncore_kernels/_isa/<tag>/.  Each compiles its own
    # copy of the C file (build/isa_src/<tag>/), so that its object file has a path of its own and
    # the parallel build never writes one object from two threads.
    variant_exts = []
    for ext in exts:
        package, _, name = ext.name.rpartition(".")
        if name in BASELINE_ONLY:
            continue
        for tag, flag in variants.items():
            variant = copy.copy(ext)
            variant.name = f"{package}._isa.{tag}.{name}"
            variant.sources = [_variant_source(source, tag) for source in ext.sources]
            variant.extra_compile_args = [*ext.extra_compile_args, flag]
            variant.isa_variant = tag
            variant_exts.append(variant)
    # Largest first: the slowest compiles start at once instead of last.
    return sorted(exts + variant_exts, key=lambda e: -os.path.getsize(e.sources[0]))


def _variant_source(source: str, tag: str) -> str:
    """A copy of the generated C file ``source`` under ``build/isa_src/<tag>/``."""
    folder = os.path.join("build", "isa_src", tag)
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, os.path.basename(source))
    shutil.copy2(source, target)
    return target


if _flag("CNNCORE_PORTABLE"):
    print("cnncore: CNNCORE_PORTABLE=1 changes nothing (the default is portable)", file=sys.stderr)

setup(
    # every package under cnncore/, and kernels/ (with its subpackages) as cnncore_kernels
    packages=find_packages(include=["cnncore", "cnncore.*"])
    + ["cnncore_kernels"]
    + [f"cnncore_kernels.{p}" for p in find_packages("kernels")],
    package_dir={"cnncore_kernels": "kernels"},
    ext_modules=extensions(),
    cmdclass={"build_ext": build_ext_per_isa},
)
