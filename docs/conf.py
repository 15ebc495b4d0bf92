"""Sphinx configuration: API reference from the docstrings (autodoc + numpydoc), contract pages,
and a gallery executed from ``examples/plot_*.py`` (sphinx-gallery)."""

from __future__ import annotations

import os

import cnncore

os.environ.setdefault("MPLBACKEND", "Agg")

project = "cnncore"
copyright = "the cnncore authors"
release = version = cnncore.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]
html_theme = "alabaster"
html_theme_options = {"description": "CNN kernels and exact dense pixelwise inference"}
default_role = "literal"  # `x` in prose reads as code, never as a broken cross-reference

autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc sections and the signatures say it
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # executed; the longer examples are shown, not run
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "min_reported_time": 1,
}
