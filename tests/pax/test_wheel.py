"""What the image does, without a Docker engine: the built wheel (not an editable install) in a
fresh virtual environment, used from an empty folder. Everything the code reads must ship in
the wheel (migrations, the price table, the SkyPilot task, the plans), found through
importlib.resources, never beside a source tree."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers import HEAD_REVISION, tiny_raw, wait_until
from tests.runner.conftest import ADMIN, free_port


def source_tree(dest: Path) -> Path:
    """The files a clean clone has (tracked, and new ones git does not ignore)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell which files a clean clone has")
    for rel in filter(None, out.decode().split("\0")):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
        elif src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(src), dest / rel)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv holding only the pax wheel; its dependencies come from the test venv through a
    .pth line (which, unlike a site dir, does not pull in the editable install's finder)."""
    root = tmp_path_factory.mktemp("wheel")
    src = source_tree(root / "src")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(root / "dist"), str(src)],
        check=True,
    )  # fmt: skip
    (wheel,) = (root / "dist").glob("*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        check=True,
    )  # fmt: skip
    return venv


def pax(venv: Path, cwd: Path, *args, env=None, **kw) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PAX_", "PYTHON"))}
    return subprocess.run(
        [str(venv / "bin" / "pax"), *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        **kw,
    )


@pytest.mark.slow
def test_the_wheel_alone_migrates_serves_and_trains(installed, tmp_path, tokenized_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import runner, pax; print(runner.__file__)"],
        cwd=empty,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(installed)), where  # the wheel's code, not the checkout's

    r = pax(installed, empty, "db", "upgrade", "--db", "var/pax.db")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["revision"] == HEAD_REVISION

    port = free_port()
    env = {
        "PAX_DB": "var/pax.db",
        "PAX_PORT": str(port),
        "PAX_ADMIN_TOKEN": ADMIN,
        "PAX_CONCURRENCY": "0",
    }
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PAX_", "PYTHON"))}
    serve = subprocess.Popen(
        [str(installed / "bin" / "pax"), "serve"],
        cwd=empty,
        env={**clean, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def up():
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(url + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "the installed `pax serve` answering /healthz")
        assert httpx.get(url + "/").status_code == 200  # the dashboard's templates shipped
        # the shipped plans are found by their documented names, from any folder; a local
        # launch without its data is refused with the command that makes it
        submit = ("sweep", "submit", "configs/embed_ratio.yaml", "--url", url, "--token", ADMIN)
        r = pax(installed, empty, *submit)
        # the installed wheel's own commands, never a script of the source tree
        assert r.returncode != 0 and "`pax tokenize --input" in r.stderr, r.stderr
        assert "pax data wikitext" in r.stderr and "scripts/" not in r.stderr
        r = pax(installed, empty, *submit, "--launcher", "worker")
        assert r.returncode == 0, r.stderr
        assert httpx.get(f"{url}/api/v1/runs").json()["total"] == 3
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        log.close()

    (empty / "tiny.yaml").write_text(yaml.safe_dump({"base": tiny_raw(tokenized_dir.parent)}))
    r = pax(installed, empty, "train", "--config", "tiny.yaml", "--run-dir", "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert json.loads((empty / "run" / "metrics.json").read_text())["run"]["status"] == "succeeded"
    assert sorted(p.name for p in empty.iterdir()) == ["reports", "run", "tiny.yaml", "var"]
