"""LEADERBOARD.html: the leaderboard's Markdown as one self-contained page, every plot and sample grid inline as a
data: URI, no external link, stylesheet or script. It converts only the Markdown the leaderboard writes: headings,
paragraphs, GitHub tables, bullet lists, images, links to local files, `code`, **bold** and *italics*."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; font-size: 14px; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
p { max-width: 110em; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: middle; }
td:first-child { white-space: nowrap; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
img.plot { max-width: 100%; display: block; margin: 0.5em 0; border: 1px solid #ddd; }
img.grid { height: 64px; image-rendering: pixelated; }
code { background: #f3f3f3; padding: 0 3px; }
"""
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")


def data_uri(path: Path) -> str | None:
    mime = MIME.get(Path(path).suffix.lower())
    if mime is None or not Path(path).is_file():
        return None
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def _inline(text: str, base: Path) -> str:
    """Escape TEXT, then turn the leaderboard's inline Markdown into HTML; local images are inlined, and a link to
    a local image becomes the image itself (a thumbnail). Anything else linked stays text: nothing leaves the page."""
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", text)

    def image(match, css):
        uri = data_uri(base / html.unescape(match.group(2)))
        alt = html.escape(html.unescape(match.group(1)), quote=True)
        return f'<img class="{css}" alt="{alt}" src="{uri}">' if uri else match.group(1)

    text = _IMAGE.sub(lambda m: image(m, "plot"), text)
    return _LINK.sub(lambda m: image(m, "grid"), text)


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def _table(rows: list[str], base: Path) -> str:
    header, body = _cells(rows[0]), [_cells(r) for r in rows[2:]]  # rows[1] is the |---| rule
    # long metric names like accuracy_public_only may break after an underscore, so the table fits a screen
    head = "".join(f"<th>{_inline(c, base).replace('_', '_<wbr>')}</th>" for c in header)
    lines = ["<table>", f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    lines += ["<tr>" + "".join(f"<td>{_inline(c, base)}</td>" for c in row) + "</tr>" for row in body]
    return "\n".join(lines + ["</tbody>", "</table>"])


def markdown_page_to_html(markdown: str, base: Path) -> str:
    """The page for MARKDOWN, whose relative links resolve under BASE."""
    base = Path(base)
    blocks, lines = [], markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            blocks.append(_table(lines[i:j], base))
            i = j
            continue
        if line.startswith("- "):
            j = i
            while j < len(lines) and lines[j].startswith("- "):
                j += 1
            blocks.append("<ul>" + "".join(f"<li>{_inline(item[2:], base)}</li>" for item in lines[i:j]) + "</ul>")
            i = j
            continue
        heading = re.match(r"(#{1,6}) (.*)", line)
        if heading:
            level = len(heading.group(1))
            blocks.append(f"<h{level}>{_inline(heading.group(2), base)}</h{level}>")
        elif line.strip():
            blocks.append(f"<p>{_inline(line, base)}</p>")
        i += 1
    title = next((html.escape(l[2:]) for l in lines if l.startswith("# ")), "dpbench leaderboard")
    return "\n".join(["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      f"<title>{title}</title>", f"<style>{STYLE}</style>", "</head>", "<body>", *blocks,
                      "</body>", "</html>"]) + "\n"
