"""Containers for real: the engine this machine has (docker when a daemon answers, else podman),
the image built once per session by `make image`'s script, and helpers that run containers and
always clean up after them. Where no container can run at all, every test here skips and says
why; CI installs podman, runc and debootstrap (.ci/run), so there they run."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT

IMAGE = "pax:test"


def _engine() -> tuple[list[str] | None, dict, str]:
    """(the engine's command, its environment, why not)."""
    env = dict(os.environ)
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    ):
        return ["docker"], env, ""
    if shutil.which("podman") is None:
        return None, env, "neither a Docker daemon nor podman here (.ci/run installs podman)"
    if not Path("/etc/containers/containers.conf").is_file():
        env["CONTAINERS_CONF"] = str(ROOT / "docker" / "containers.conf")
    probe = subprocess.run(["podman", "info"], capture_output=True, text=True, env=env, timeout=60)
    if probe.returncode != 0:
        return None, env, f"podman can't run here: {probe.stderr.strip()[-300:]}"
    return ["podman"], env, ""


@pytest.fixture(scope="session")
def engine():
    cmd, env, why = _engine()
    if cmd is None:
        pytest.skip(why)
    return Engine(cmd, env)


class Engine:
    def __init__(self, cmd: list[str], env: dict):
        self.cmd, self.env = cmd, env
        self.made: list[tuple[str, str]] = []  # (kind, name) to remove at the end

    @property
    def name(self) -> str:
        return self.cmd[0]

    def __call__(self, *args: str, check: bool = True, timeout: float = 600, **kw):
        res = subprocess.run(
            [*self.cmd, *args], capture_output=True, text=True, env=self.env, timeout=timeout, **kw
        )
        if check and res.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args[:3])}...: {res.stderr[-2000:]}")
        return res

    def unique(self, what: str) -> str:
        return f"pax-test-{what}-{uuid.uuid4().hex[:8]}"

    def network(self) -> str:
        name = self.unique("net")
        self("network", "create", name)
        self.made.append(("network", name))
        return name

    def volume(self) -> str:
        name = self.unique("vol")
        self("volume", "create", name)
        self.made.append(("volume", name))
        return name

    def run(self, name: str, *args: str) -> str:
        """A detached container (removed at the end)."""
        self.made.append(("container", name))
        self("run", "-d", "--name", name, *args)
        return name

    def procs(self, container: str) -> list[dict]:
        """Every process in the container: pid, uid, command line."""
        script = (
            "for p in /proc/[0-9]*; do pid=${p#/proc/}; "
            'uid=$(awk "/^Uid:/ {print \\$2}" $p/status 2>/dev/null); '
            'cmd=$(tr "\\0" " " < $p/cmdline 2>/dev/null); '
            '[ -n "$cmd" ] && echo "$pid|$uid|$cmd"; done'
        )
        out = self("exec", container, "sh", "-c", script).stdout
        rows = [line.split("|", 2) for line in out.splitlines() if line.count("|") >= 2]
        return [{"pid": int(p), "uid": int(u), "cmd": c} for p, u, c in rows if u.isdigit()]

    def cleanup(self) -> None:
        for kind, name in reversed(self.made):
            with contextlib.suppress(Exception):
                if kind == "container":
                    self("rm", "-f", "-t", "2", name, check=False, timeout=120)
                else:
                    self(kind, "rm", "-f", name, check=False, timeout=120)
        self.made.clear()


@pytest.fixture
def containers(engine):
    yield engine
    engine.cleanup()


@pytest.fixture(scope="session")
def image(engine, tmp_path_factory):
    """`make image`'s script, once: the base, the wheels and the build, timed (their JSON is
    kept in test-artifacts/image.json for the record)."""
    env = {**engine.env, "IMAGE": IMAGE, "COMPOSE_DEPS": "1"}
    res = subprocess.run(
        ["bash", str(ROOT / "docker" / "build-image.sh")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "image.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


@pytest.fixture(scope="session")
def shared_data(tokenized_dir):
    """The test tokenizer's files in a folder any user may read (the containers' user 10001;
    pytest's own folders are 0700): its root holds sp512/."""
    with tempfile.TemporaryDirectory(prefix="pax-data-") as d:
        root = Path(d)
        shutil.copytree(tokenized_dir, root / tokenized_dir.name)
        for p in [root, *root.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        yield root
