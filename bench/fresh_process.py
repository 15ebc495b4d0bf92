"""Python code in a fresh process, started as a user's process starts, in either import order.

The import-order studies (``bench.import_order``, ``bench.openmp_idle``) need processes in which
nothing is loaded yet: whichever of torch and cnncore is imported first loads libgomp, which reads
its settings then.  ``run(code, order)`` runs ``code`` with ``{imports}`` replaced by that order's
imports, in a fresh interpreter, in the temporary folder (not the repository root, so the
installed packages are what gets imported), and returns its standard output.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

ORDERS = {
    "cnncore first": "import cnncore\nimport torch",
    "torch first": "import torch\nimport cnncore",
}


def run(code: str, order: str, timeout: float | None = 600, **fmt: object) -> str:
    """Standard output of ``code.format(imports=..., **fmt)`` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code.format(imports=ORDERS[order], **fmt)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
        timeout=timeout,
    )
    return out.stdout
