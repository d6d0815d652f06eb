"""The static results page (one HTML file: inline SVG figures, inline CSS, no script, no CDN)
and the one-page summary's PDF, both rendered from the Markdown, which stays the source.

Nothing in a page comes from anywhere but the report: raw HTML in the Markdown is escaped,
figures are inlined only from the report's own list of plots (by name, from its plots/ folder;
any other image is dropped to its alt text), a Content-Security-Policy forbids scripts and
every fetch, and the PDF printer runs with JavaScript off, no network and a deadline."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from html import escape
from pathlib import Path

from markdown_it import MarkdownIt

CSS = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
  color: #1d2329; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left; }
th { background: #f3f5f7; } code { background: #f3f5f7; padding: 0 .2rem; }
blockquote { border-left: 4px solid #c0504d; margin: 0; padding: .2rem 1rem; background: #fbeeee; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; }
@media print { body { margin: 0; font-size: 10px; line-height: 1.35; }
  figure { display: inline-block; width: 32%; margin: 0; vertical-align: top; } }
"""

IMG = re.compile(r"<img\b[^>]*>")
IMG_PARTS = re.compile(r'^<img src="plots/([a-z0-9_]+)\.png" alt="([^"]*)"\s*/?>$')
ALT = re.compile(r'alt="([^"]*)"')
# no script, no fetch of any kind: only the page's own inline styles and figures
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)


def inline_svg(plots_dir: Path, name: str, alt: str) -> str:
    path = plots_dir / f"{name}.svg"
    if not path.is_file():
        return f'<p class="missing">[figure {escape(name)} is missing from plots/]</p>'
    svg = path.read_text()
    svg = svg[svg.index("<svg") :]  # the XML prolog and doctype are not allowed inside HTML
    return f'<figure role="img" aria-label="{alt}">{svg}</figure>'


def _figure(tag: str, plots_dir: Path, figures: set[str]) -> str:
    """An image of the report's own list, inlined; anything else reduced to its alt text."""
    m = IMG_PARTS.match(tag)
    if m and m.group(1) in figures:
        return inline_svg(plots_dir, m.group(1), m.group(2))
    alt = ALT.search(tag)
    return f"<span>{alt.group(1) if alt else ''}</span>"  # already escaped by markdown-it


def html_page(markdown: str, title: str, plots_dir: Path, figures: set[str] = frozenset()) -> str:
    """The page of `markdown`; `figures`: the plot names (no extension) it may inline."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    body = IMG.sub(lambda m: _figure(m.group(0), plots_dir, set(figures)), body)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n"
        "</html>\n"
    )


# Headless, and nothing fetched on its own: the flags every use of Chromium here runs with
# (the PDF printer, the dashboard's screenshots, the browser tests).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


# Printing runs the page as a browser would, so whatever the page holds: no network (every
# request goes to a proxy that does not exist, names resolve to nothing). Scripts are stopped by
# the policy the printer puts first in the page (Chromium's own switch for it stops printing).
PRINT_FLAGS = [
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--disable-extensions",
    "--no-first-run",
]


def pdf_from_html(html: str, pdf_path: Path, timeout_s: float = 60) -> str | None:
    """Print the page `html` to PDF with headless Chromium when one is installed; returns the
    converter's name, or None when there is none or it failed or ran past `timeout_s` (the
    Markdown and HTML are the report; a PDF is a convenience, never a reason to lose them).
    The page is printed with the Content-Security-Policy first: no script of it runs."""
    exe = chromium()
    pdf_path.unlink(missing_ok=True)  # an older PDF must not pass for this one
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as profile:
        html_path = Path(profile) / "print.html"
        policy = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        html_path.write_text(policy + html)
        try:
            proc = subprocess.Popen(
                [exe, *CHROMIUM_FLAGS, *PRINT_FLAGS,
                 f"--user-data-dir={profile}", "--no-pdf-header-footer",
                 f"--print-to-pdf={pdf_path}", html_path.resolve().as_uri()],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,  # its helpers too are stopped at the deadline
            )  # fmt: skip
        except OSError:
            return None
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if code != 0:
        pdf_path.unlink(missing_ok=True)
        return None
    return f"headless Chromium ({Path(exe).name})" if pdf_path.is_file() else None
