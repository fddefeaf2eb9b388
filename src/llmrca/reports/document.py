"""The incident report as data (sections of blocks) and its Markdown and HTML renderings.

Every string is escaped on the way out: text from incident data (titles, prompts, outputs, log
messages) can carry markup, script or Markdown link syntax, and must reach the reader as text.
HTML escaping uses :func:`html.escape` (quotes included); Markdown escaping turns ``<``, ``>``
and ``&`` into entities (so no raw HTML survives a Markdown renderer) and backslash-escapes
Markdown punctuation (so no link, image or emphasis is formed).
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from typing import Any, Union

import pandas as pd

__all__ = ["Bullets", "Figure", "Section", "Table", "Text", "escape_html", "escape_markdown",
           "render_html", "render_markdown"]


@dataclass(frozen=True)
class Text:
    """A paragraph (plain text; escaped when rendered)."""

    text: str


@dataclass(frozen=True)
class Bullets:
    """A bullet list (plain text items)."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A table; cells are shown as text (escaped)."""

    frame: pd.DataFrame
    caption: str = ""
    max_rows: int = 40


@dataclass(frozen=True)
class Figure:
    """A PNG figure with a caption; ``name`` is its file stem in ``figures/``."""

    name: str
    png: bytes
    caption: str = ""


Block = Union[Text, Bullets, Table, Figure]  # noqa: UP007 - a runtime alias on Python 3.10


@dataclass(frozen=True)
class Section:
    """One section of the report."""

    name: str
    title: str
    blocks: tuple[Block, ...] = field(default_factory=tuple)


def escape_html(value: Any) -> str:
    """Text for HTML (element content and quoted attributes)."""
    return html.escape(_cell(value), quote=True)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]!|~])")
_MD_LINE_START = re.compile(r"^(\s*)([#>+-]|\d+[.)])")


def escape_markdown(value: Any) -> str:
    """Text for Markdown: no raw HTML, no links, images, emphasis or table breaks."""
    text = _cell(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text).replace("\r", " ").replace("\n", " ")
    return _MD_LINE_START.sub(
        lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    if isinstance(value, pd.Timestamp):
        return "" if pd.isna(value) else str(value)
    return str(value)


def _rows(table: Table) -> tuple[list[str], list[list[Any]], int]:
    frame = table.frame
    shown = frame.head(table.max_rows)
    return ([str(c) for c in frame.columns],
            [list(row) for row in shown.itertuples(index=False, name=None)],
            len(frame) - len(shown))


# -- Markdown ---------------------------------------------------------------------------------------

def _markdown_block(block: Block, figure_dir: str) -> str:
    if isinstance(block, Text):
        return escape_markdown(block.text)
    if isinstance(block, Bullets):
        return "\n".join(f"- {escape_markdown(item)}" for item in block.items)
    if isinstance(block, Table):
        columns, rows, more = _rows(block)
        if not columns:
            return "_(no rows)_"
        lines = []
        if block.caption:
            lines.append(f"*{escape_markdown(block.caption)}*\n")
        lines.append("| " + " | ".join(escape_markdown(c) for c in columns) + " |")
        lines.append("|" + "---|" * len(columns))
        lines += ["| " + " | ".join(escape_markdown(v) for v in row) + " |" for row in rows]
        if not rows:
            lines.append("| " + " | ".join("" for _ in columns) + " |")
        if more:
            lines.append(f"\n({more} more rows in the notebooks)")
        return "\n".join(lines)
    if isinstance(block, Figure):
        return f"![{escape_markdown(block.caption)}]({figure_dir}/{block.name}.png)"
    raise TypeError(f"unknown block {type(block).__name__}")


def render_markdown(title: str, sections: list[Section], figure_dir: str = "figures") -> str:
    """The report as Markdown; figures are linked as ``<figure_dir>/<name>.png``."""
    parts = [f"# {escape_markdown(title)}"]
    for section in sections:
        parts.append(f"## {escape_markdown(section.title)}")
        parts += [_markdown_block(b, figure_dir) for b in section.blocks]
    return "\n\n".join(parts) + "\n"


# -- HTML -------------------------------------------------------------------------------------------

def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        return f"<p>{escape_html(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{escape_html(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        columns, rows, more = _rows(block)
        head = "".join(f"<th>{escape_html(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{escape_html(v)}</td>" for v in row) + "</tr>"
                       for row in rows)
        caption = f"<caption>{escape_html(block.caption)}</caption>" if block.caption else ""
        tail = f"<p class='more'>({more} more rows in the notebooks)</p>" if more else ""
        return (f"<table class='llmrca'>{caption}<thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>{tail}")
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        return (f"<figure><img src='data:image/png;base64,{data}' "
                f"alt='{escape_html(block.caption)}'/><figcaption>"
                f"{escape_html(block.caption)}</figcaption></figure>")
    raise TypeError(f"unknown block {type(block).__name__}")


def render_section_html(section: Section) -> str:
    """One section as an HTML fragment (what the report notebook displays)."""
    return (f"<section id='{escape_html(section.name)}'><h2>{escape_html(section.title)}</h2>"
            + "".join(_html_block(b) for b in section.blocks) + "</section>")


def render_html(title: str, sections: list[Section]) -> str:
    """The report as one HTML fragment (no scripts; figures as data URIs)."""
    return f"<h1>{escape_html(title)}</h1>" + "".join(render_section_html(s) for s in sections)
