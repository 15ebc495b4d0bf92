#!/usr/bin/env bash
# Build the documentation with warnings as errors (what CI runs).  Needs the docs extra:
#   pip install -e ".[docs]"
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf docs/_build docs/auto_examples
python -m sphinx -W --keep-going -b html docs docs/_build/html
