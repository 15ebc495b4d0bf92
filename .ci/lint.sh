#!/usr/bin/env bash
# Every linter and the PTX compile check, from the repository root, in the project's venv
# (pip install -e ".[test,lint]").  .ci/run calls it; pre-commit runs the same linters.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"
ruff check .
ruff format --check .
echo "== cython-lint (kernels/*.pyx, *.pxi, *.pxd)"
cython-lint kernels
echo "== import-linter (the layers: bench -> cnncore -> cnncore_kernels)"
lint-imports --no-cache
echo "== PTX compile check (every CUDA kernel for sm_90, no GPU needed)"
# the real CUDA target, not the simulator the tests turn on; run outside the checkout so the
# installed package is compiled
(cd "${TMPDIR:-/tmp}" && env -u NUMBA_ENABLE_CUDASIM python -m cnncore_kernels.cuda._ptxcheck --cc 9.0)
