"""Start-up refusals: one line each, with the fix, never a traceback or a password."""

import os

import pytest

from tests.runner.conftest import ADMIN, serve_once


def test_a_second_service_on_one_ledger_refuses_to_start(service, tmp_path):
    res = serve_once(tmp_path, PAX_DB=str(service.db), PAX_ADMIN_TOKEN=ADMIN)
    assert res.returncode == 2 and "in use by" in res.stderr and "Traceback" not in res.stderr


def test_start_up_errors_are_one_line(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    res = serve_once(tmp_path, PAX_DB=str(blocker / "pax.db"), PAX_ADMIN_TOKEN=ADMIN)
    assert res.returncode == 2 and "is a file, not a folder" in res.stderr
    assert "Traceback" not in res.stderr
    if os.geteuid() != 0:  # root can write a read-only file
        ro = tmp_path / "ro.db"
        ro.write_text("")
        ro.chmod(0o400)
        res = serve_once(tmp_path, PAX_DB=str(ro), PAX_ADMIN_TOKEN=ADMIN)
        assert res.returncode == 2 and "read-only" in res.stderr


@pytest.mark.parametrize(
    "url,fragment",
    [
        ("mysql://pax:s3cretpw@127.0.0.1/pax", "SQLite or PostgreSQL, not mysql"),
        ("postgresql://pax:s3cretpw@127.0.0.1:1/pax", "cannot open the ledger"),
        ("postgresql://pax:s3cretpw@127.0.0.1:notaport/pax", "not a database URL"),
    ],
)
def test_a_bad_database_url_stops_the_start_with_what_to_do(tmp_path, url, fragment):
    res = serve_once(tmp_path, PAX_DATABASE_URL=url, PAX_ADMIN_TOKEN=ADMIN)
    said = res.stdout + res.stderr
    assert res.returncode == 2 and fragment in said, said
    assert "Traceback" not in said and "s3cretpw" not in said  # never the password


@pytest.mark.parametrize("how", ["symlink", "hardlink", "url"])
def test_one_service_per_ledger_file_however_it_is_named(service, tmp_path, how):
    """The lock was keyed on the path's text: a symlinked --db, or sqlite:///...?mode=rw,
    started a second service on the same file, and both said they led."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    if how == "symlink":
        env = {"PAX_DB": str(other / "pax.db")}
        (other / "pax.db").symlink_to(service.db)
    elif how == "hardlink":
        env = {"PAX_DB": str(other / "pax.db")}
        (other / "pax.db").hardlink_to(service.db)
    else:
        env = {"PAX_DATABASE_URL": f"sqlite:///{service.db}?mode=rw"}
    res = serve_once(other, PAX_ADMIN_TOKEN=ADMIN, **env)
    assert res.returncode == 2 and "in use by" in res.stderr, res.stderr
