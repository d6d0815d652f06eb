"""The summary's PDF is a convenience: a converter that fails leaves no PDF, never an error."""

from __future__ import annotations

from runner.release.page import pdf_from_html


def test_a_failing_converter_gives_no_pdf_and_no_stale_one(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "chromium"
    fake.write_text("#!/bin/sh\necho crashed >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    old = tmp_path / "SUMMARY.pdf"
    old.write_bytes(b"%PDF from an earlier report")
    assert pdf_from_html("<p>hi</p>", old) is None
    assert not old.exists()
