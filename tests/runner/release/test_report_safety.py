"""A report renders only what the report itself made: user text can't form an image or a link,
figures come only from the report's own list, and the PDF printer runs no script and fetches
nothing (issue 25: a sweep's name once pasted a server file's SVG into RESULTS.html and its
script ran in the printer, writing into the PDF and calling a listener on 127.0.0.1)."""

import http.server
import threading
import time
from pathlib import Path

import pytest

from runner.release.page import chromium, html_page, pdf_from_html
from tests.helpers import small_plan, submit

SECRET = '<svg xmlns="http://www.w3.org/2000/svg"><text>SERVER-SECRET</text></svg>'


def test_a_sweep_named_like_an_image_reads_as_text(service, tokenized_dir):
    # the service's folder, three levels above a sweep's plots/ (reports/sweep-0001/plots)
    (service.cwd / "secret.svg").write_text(SECRET)
    name = "![p](plots/../../../secret.png)"
    plan = small_plan(tokenized_dir.parent).replace("name: small", f"name: '{name}'")
    sweep = submit(service, plan).json()["id"]
    r = service.post(f"/sweeps/{sweep}/report", params={"pdf": "false"})
    assert r.status_code == 200, r.text
    html = Path(r.json()["html"]).read_text()
    md = Path(r.json()["results_md"]).read_text()
    assert "SERVER-SECRET" not in html and "<img" not in html
    assert "\\!\\[p\\]" in md and "![p]" not in md.replace("\\!\\[p\\]", "")


def test_only_the_reports_own_figures_are_inlined(tmp_path):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "ours.svg").write_text('<?xml version="1.0"?><svg><text>OURS</text></svg>')
    (plots / "theirs.svg").write_text("<svg><text>THEIRS</text></svg>")
    md = "![a](plots/ours.png) ![b](plots/theirs.png) ![c](plots/gone.png) ![d](file:///etc/x.png)"
    page = html_page(md, "t", plots, {"ours", "gone"})
    assert "OURS" in page and "THEIRS" not in page and "<img" not in page
    assert "[figure gone is missing from plots/]" in page  # a message, never a 500
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


class Listener(http.server.BaseHTTPRequestHandler):
    hits: list = []

    def do_GET(self):  # noqa: N802 - http.server's name
        Listener.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.mark.slow
def test_the_pdf_printer_runs_no_script_and_fetches_nothing(tmp_path):
    if chromium() is None:
        pytest.skip("no chromium here (apt-get install chromium)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    page = (  # a hostile page straight to the printer: the printer alone must hold
        f'<html><body><img src="{url}/img"><p id="t">page</p>'
        f'<script>fetch("{url}/js"); alert("stall"); while (true) {{}}</script></body></html>'
    )
    t0 = time.monotonic()
    got = pdf_from_html(page, tmp_path / "p.pdf", timeout_s=60)
    took = time.monotonic() - t0
    server.shutdown()
    assert got is not None and (tmp_path / "p.pdf").read_bytes().startswith(b"%PDF")
    assert took < 45, took  # no alert, no endless script: printed at once
    assert Listener.hits == []
