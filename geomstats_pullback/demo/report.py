"""A self-contained HTML report: sections of text, PNG figures, tables and timings.

Each figure (a ``matplotlib.figure.Figure``, see
:func:`geomstats_pullback.demo.plots.new_figure`) is written as a PNG under
``figures/`` and embedded in the HTML as a data URI, so the HTML file alone
is the whole report.
"""

import base64
import contextlib
import html
import time
from pathlib import Path


def format_number(value, digits=4):
    """The text a number is shown as in the report (also used by tests to find it)."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    return f"{float(value):.{digits}g}"


class Report:
    """Collect sections and write them as one HTML file with its PNG figures.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Directory of ``report.html``; figures go to ``out_dir/figures``.
    title : str

    Attributes
    ----------
    sections : list of dict
        ``{"title", "paragraphs", "figures", "tables"}`` in order.
    timings : dict
        Seconds per timed step, in order.
    """

    def __init__(self, out_dir, title):
        self.out_dir = Path(out_dir)
        self.figure_dir = self.out_dir / "figures"
        self.figure_dir.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.sections = []
        self.timings = {}

    @contextlib.contextmanager
    def timed(self, name):
        """Context manager adding the wall time of its block to :attr:`timings`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    def save_figure(self, fig, name):
        """Write ``fig`` to ``figures/<name>.png`` and return that path."""
        path = self.figure_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        return path

    def add_section(self, title, *, paragraphs=(), figures=(), tables=()):
        """Append a section.

        Parameters
        ----------
        title : str
        paragraphs : sequence of str
            Plain text (escaped).
        figures : sequence of (path, caption)
            PNG files written by :meth:`save_figure`.
        tables : sequence of (header, rows)
            ``header`` a sequence of str, ``rows`` sequences of values;
            numbers are shown with :func:`format_number`.
        """
        self.sections.append(
            {"title": title, "paragraphs": list(paragraphs), "figures": list(figures), "tables": list(tables)}
        )

    def _table_html(self, header, rows):
        def cell(value):
            text = value if isinstance(value, str) else format_number(value)
            return f"<td>{html.escape(text)}</td>"

        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def _figure_html(self, path, caption):
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        name = html.escape(Path(path).name)
        return (
            f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)} <code>figures/{name}</code></figcaption></figure>"
        )

    def to_html(self):
        """The whole report as an HTML string (timings last)."""
        parts = [f"<h1>{html.escape(self.title)}</h1>"]
        toc = "".join(f'<li><a href="#s{i}">{html.escape(s["title"])}</a></li>' for i, s in enumerate(self.sections))
        parts.append(f"<ol>{toc}<li><a href='#timings'>Timings</a></li></ol>")
        for i, section in enumerate(self.sections):
            parts.append(f'<h2 id="s{i}">{html.escape(section["title"])}</h2>')
            parts += [f"<p>{html.escape(p)}</p>" for p in section["paragraphs"]]
            parts += [self._table_html(h, r) for h, r in section["tables"]]
            parts += [self._figure_html(p, c) for p, c in section["figures"]]
        parts.append('<h2 id="timings">Timings</h2>')
        rows = [(name, seconds) for name, seconds in self.timings.items()]
        rows.append(("total", sum(self.timings.values())))
        parts.append(self._table_html(("step", "seconds"), rows))
        body = "\n".join(parts)
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n"
        )

    def write(self, filename="report.html"):
        """Write the HTML file; returns its path."""
        path = self.out_dir / filename
        path.write_text(self.to_html(), encoding="utf-8")
        return path


_CSS = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; line-height: 1.45; color: #222; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; }
img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #555; }
"""
