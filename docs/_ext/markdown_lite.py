"""Read the project's few Markdown pages (``docs/*.md``) without extra packages.

A small Sphinx source parser: it rewrites the Markdown subset those pages use
into reStructuredText, then hands it to Sphinx's own reST parser. Supported:
ATX headings (``#`` to ``####``), fenced code blocks, inline code, links,
emphasis, lists, and pipe tables. Anything else passes through as reST, so an unsupported
construct shows up as a build warning (the docs build with ``-W``).
"""

import re

from sphinx.parsers import RSTParser

_UNDERLINES = {1: "=", 2: "-", 3: "~", 4: "^"}
_INLINE = re.compile(r"`(?P<code>[^`\n]+)`|\[(?P<text>[^\]\n]+)\]\((?P<url>[^)\s]+)\)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s")
_TABLE_RULE = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


def _cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(rows):
    """A pipe table (header row first) as a reST list-table."""
    out = ["", ".. list-table::", "   :header-rows: 1", ""]
    for row in rows:
        for j, cell in enumerate(row):
            out.append(f"   {'* -' if j == 0 else '  -'} {_inline(cell)}".rstrip())
    return out + [""]


def _inline(text):
    """Inline Markdown to reST: code spans (escaped so that reST sees their edges) and links."""

    def convert(match):
        if match.group("code") is None:
            return f"`{match.group('text')} <{match.group('url')}>`__"
        start, end = match.span()
        before = "\\ " if start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_") else ""
        after = "\\ " if end < len(text) and (text[end].isalnum() or text[end] == "_") else ""
        return f"{before}``{match.group('code')}``{after}"

    return _INLINE.sub(convert, text)


def markdown_to_rst(source):
    """Convert the supported Markdown subset to reStructuredText.

    Parameters
    ----------
    source : str

    Returns
    -------
    rst : str
    """
    out = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^```\s*([\w+-]*)\s*$", line)
        if fence:
            language = fence.group(1) or "text"
            block = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(lines[i])
                i += 1
            out += ["", f".. code-block:: {language}", ""] + [f"   {b}" if b else "" for b in block] + [""]
            i += 1
            continue
        if line.lstrip().startswith("|") and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1]):
            rows = [_cells(line)]
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            out += _table(rows)
            continue
        heading = re.match(r"^(#{1,4})\s+(.*?)\s*#*$", line)
        if heading:
            title = _inline(heading.group(2))
            out += ["", title, _UNDERLINES[len(heading.group(1))] * len(title), ""]
            i += 1
            continue
        if _LIST_ITEM.match(line) and out and out[-1].strip() and not _LIST_ITEM.match(out[-1]) and not out[-1].startswith(" "):
            out.append("")  # reST needs a blank line between a paragraph and a list
        out.append(_inline(line))
        i += 1
    return "\n".join(out) + "\n"


class MarkdownLiteParser(RSTParser):
    """reST parser fed with :func:`markdown_to_rst` of the source."""

    supported = ("markdown", "md")

    def parse(self, inputstring, document):
        super().parse(markdown_to_rst(inputstring), document)


def setup(app):
    app.add_source_suffix(".md", "markdown")
    app.add_source_parser(MarkdownLiteParser)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
