"""The static results page (one HTML file: inline SVG figures, inline CSS, no script, no CDN)
and the one-page summary's PDF, both rendered from the Markdown, which stays the source."""

from __future__ import annotations

import re
import shutil
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

IMG = re.compile(r'<img src="plots/([^"]+)\.png" alt="([^"]*)"\s*/?>')


def inline_svg(plots_dir: Path, name: str, alt: str) -> str:
    svg = (plots_dir / f"{name}.svg").read_text()
    svg = svg[svg.index("<svg") :]  # the XML prolog and doctype are not allowed inside HTML
    return f'<figure role="img" aria-label="{escape(alt)}">{svg}</figure>'


def html_page(markdown: str, title: str, plots_dir: Path) -> str:
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    body = IMG.sub(lambda m: inline_svg(plots_dir, m.group(1), m.group(2)), body)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
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


def pdf_from_html(html_path: Path, pdf_path: Path, timeout_s: float = 120) -> str | None:
    """Print the page to PDF with headless Chromium when one is installed; returns the
    converter's name, or None when there is none or it failed (the Markdown and HTML are the
    report; a PDF is a convenience, never a reason to lose them)."""
    exe = chromium()
    pdf_path.unlink(missing_ok=True)  # an older PDF must not pass for this one
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as profile:
        try:
            subprocess.run(
                [exe, *CHROMIUM_FLAGS,
                 f"--user-data-dir={profile}", "--no-pdf-header-footer",
                 f"--print-to-pdf={pdf_path}", html_path.resolve().as_uri()],
                check=True, capture_output=True, timeout=timeout_s,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
    return f"headless Chromium ({Path(exe).name})" if pdf_path.is_file() else None
