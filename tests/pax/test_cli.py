"""The command line: help text as rich renders it."""

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_serve_help_shows_each_options_environment_variable():
    """The `[env ...]` notes of the options' help survive rich's markup (it once ate them as
    tags, leaving "Bind address .")."""
    res = subprocess.run(
        [sys.executable, "-m", "pax.cli", "serve", "--help"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    for note in ("[env PAX_DB; var/pax.db]", "[env PAX_DATABASE_URL]", "[env PAX_HOST; 127.0.0.1]"):
        assert note in res.stdout, res.stdout
