"""Token files: unusable ones stop the start with what to do; generated ones are private
and whole."""

import stat

import pytest

from tests.runner.conftest import serve_once


@pytest.mark.parametrize(
    "content,mode,fragment",
    [
        ("", 0o600, "is empty"),
        ("short", 0o600, "shorter than"),
        ("x" * 40, 0o644, "readable by others"),
    ],
)
def test_an_unusable_token_file_stops_the_start_with_what_to_do(tmp_path, content, mode, fragment):
    db = tmp_path / "var" / "pax.db"
    db.parent.mkdir()
    tf = db.with_name("pax.db.admin_token")
    tf.write_text(content)
    tf.chmod(mode)
    res = serve_once(tmp_path, PAX_DB=str(db))
    assert res.returncode == 2, res.stderr
    assert fragment in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2


def test_generated_token_files_are_private_and_whole(service):
    # (the admin token here comes from the settings; test_api checks a generated admin file)
    path = service.db.with_name(f"{service.db.name}.worker_token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_text().strip()) >= 32
    assert stat.S_IMODE(service.db.stat().st_mode) == 0o600
    assert not list(service.db.parent.glob(".*.tmp*"))


def test_a_token_file_that_is_a_folder_is_a_one_line_refusal(tmp_path):
    """It was a traceback (IsADirectoryError)."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "pax.db.admin_token").mkdir()
    res = serve_once(tmp_path, PAX_DB=str(tmp_path / "var" / "pax.db"))
    assert res.returncode == 2 and "is a folder, not a token file" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_a_generated_token_is_never_printed(tmp_path):
    """Start-up printed its first 4 characters; the docs say it is never printed."""
    # the admin token is generated, then a short worker token stops the start (exit 2)
    res = serve_once(tmp_path, PAX_DB=str(tmp_path / "var" / "pax.db"), PAX_WORKER_TOKEN="short")
    said = res.stdout + res.stderr
    token = (tmp_path / "var" / "pax.db.admin_token").read_text().strip()
    assert res.returncode == 2 and "generated the admin token in" in said, said
    assert f"({token[:4]}...)" not in said and token[:8] not in said
