"""Sphinx configuration: autodoc + napoleon (numpydoc docstrings), MyST for Markdown pages, the stock theme."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
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
    "myst_parser",  # the Markdown pages
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

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated/*.txt", "_generated/*.rst", "benchmarks/*.md"]
html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"geomstats-pullback {release}"

# The demo's --help, generated from the parser so that the docs cannot drift from it.
_generated = Path(__file__).parent / "_generated"
_generated.mkdir(exist_ok=True)
from geomstats_pullback.cli import command_parser  # noqa: E402

(_generated / "demo_help.txt").write_text(command_parser("demo").format_help(), encoding="utf-8")

# docs/benchmarks.rst: one section per script in benchmarks/, with the table it last wrote
# (docs/benchmarks/<script>.md, written by the script itself) or how to produce it.
_sections = []
for _script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
    _table = Path(__file__).parent / "benchmarks" / f"{_script.stem}.md"
    _sections.append(f"{_script.name}\n{'-' * len(_script.name)}\n\n")
    if _table.exists():
        _sections.append(f".. include:: /benchmarks/{_table.name}\n   :parser: myst_parser.sphinx_\n\n")
    else:
        _sections.append(f"Not measured yet: ``./dev bench {_script.name}`` writes ``docs/benchmarks/{_table.name}``.\n\n")
(_generated / "benchmark_tables.rst").write_text("".join(_sections), encoding="utf-8")
