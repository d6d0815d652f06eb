"""Local trainers as their own user (PAX_TRAINER_USER): they can't read the service's token
files, which a trainer of the service's own user could (issue 25). Needs root, as the feature
does; the "python" here is a stand-in script, since the project's interpreter may sit in a
folder only root can enter."""

import os
import sys
import tempfile
from pathlib import Path

import pytest

from runner.auth import write_token_file
from runner.launch.base import LaunchSpec
from runner.launch.local import LocalLauncher, trainer_account
from tests.helpers import wait_until

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0, reason="running as another user needs root"
)

STAND_IN = """#!/bin/sh
# what a trainer would do: say who it is, try the service's token, write in its folder
id -u > "$PAX_OUT/uid"
cat "$PAX_TOKEN_FILE" > "$PAX_OUT/token" 2> "$PAX_OUT/token.err"
echo $? > "$PAX_OUT/token.rc"
echo "$HOME" > "$PAX_OUT/home"
"""


@pytest.fixture
def base():
    """A folder any user may enter (pytest's own are 0700): only the files' modes protect."""
    with tempfile.TemporaryDirectory(prefix="pax-trainer-user-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


def test_a_trainer_of_its_own_user_cannot_read_the_token_files(base):
    python = base / "python"
    python.write_text(STAND_IN)
    python.chmod(0o755)
    token = base / "pax.db.admin_token"
    write_token_file(token)
    run_dir = base / "runs" / "000001-x"
    run_dir.mkdir(parents=True)
    (run_dir / "spec.yaml").write_text("base: {}\n")  # written by the service, as root
    launcher = LocalLauncher(
        python=str(python), user="nobody", passthrough=["PAX_TOKEN_FILE", "PAX_OUT"]
    )
    os.environ.update(PAX_TOKEN_FILE=str(token), PAX_OUT=str(run_dir))
    try:
        spec = LaunchSpec(1, 1, run_dir, run_dir / "spec.yaml", {"PAX_RUN_ID": "1"})
        pid = launcher.start(spec)
        wait_until(lambda: launcher.poll(pid).phase == "exited", 60, "the stand-in exiting")
    finally:
        for k in ("PAX_TOKEN_FILE", "PAX_OUT"):
            os.environ.pop(k, None)
    uid, _ = trainer_account("nobody")
    assert int((run_dir / "uid").read_text()) == uid != 0
    assert (run_dir / "token").read_text() == "" and int((run_dir / "token.rc").read_text()) != 0
    assert "Permission denied" in (run_dir / "token.err").read_text()
    assert (run_dir / "spec.yaml").stat().st_uid == uid  # its folder was handed over
    assert (run_dir / "home").read_text().strip() == str(run_dir)


def test_an_unknown_trainer_user_stops_the_start():
    with pytest.raises(ValueError, match="no such user"):
        trainer_account("no-such-user-pax")
