#!/usr/bin/env bash
# Build the documentation with warnings as errors (what CI runs); about 20 s, the gallery included.
#   bash docs/build.sh             # needs the docs extra: pip install -e ".[docs]"
#   bash docs/build.sh --install   # installs the docs extra first (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--install" ]]; then
    pip install -q -e ".[docs]"
fi
rm -rf docs/_build docs/auto_examples docs/sg_execution_times.rst
python -m sphinx -W --keep-going -b html docs docs/_build/html
