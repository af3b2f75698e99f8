"""Sphinx configuration: autodoc + napoleon (numpydoc docstrings), the stock theme."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent / "_ext"))
os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import geomstats_pullback  # noqa: E402

project = "geomstats-pullback"
author = "geomstats-pullback contributors"
copyright = "2026, " + author
release = geomstats_pullback.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "markdown_lite",  # docs/_ext: the Markdown pages, without myst
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# "Attributes" sections as fields, not directives: NamedTuple results document their fields
# in the docstring and autodoc lists them too, which would describe each twice.
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
# geomstats' base classes carry docstrings in their own dialect: document our members only.
autodoc_inherit_docstrings = False

exclude_patterns = ["_build", "_generated/*.txt"]
html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"geomstats-pullback {release}"

# The demo's --help, generated from the parser so that the docs cannot drift from it.
_generated = Path(__file__).parent / "_generated"
_generated.mkdir(exist_ok=True)
from geomstats_pullback.cli import command_parser  # noqa: E402

(_generated / "demo_help.txt").write_text(command_parser("demo").format_help(), encoding="utf-8")
