"""compose.yaml, run for real with podman-compose (or docker compose where a daemon answers):
`service` + `worker-cpu` from the same values .env.example asks for, the data volume made by
`compose run --rm service data` through the offline mirror, and a plan of two tiny runs that
finishes; then the postgres profile: PostgreSQL, two service replicas behind the proxy, and a
worker through the proxy. Each `up` is timed (test-artifacts/compose.json), and everything is
torn down, volumes included."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from pax.client import Client
from tests.conftest import ROOT
from tests.deploy.conftest import IMAGE
from tests.deploy.test_image import free_port, ready
from tests.helpers import tiny_raw, wait_until

pytestmark = pytest.mark.slow
ADMIN = "compose-admin-token-0123456789"
WORKER = "compose-worker-token-9876543210"
MIRROR = ROOT.parent / "shared" / "data"


class Compose:
    def __init__(self, engine, env: dict):
        self.engine = engine
        self.project = f"paxt{uuid.uuid4().hex[:8]}"
        self.env = env
        bin_dir = Path(sys.executable).parent
        exe = (
            ["docker", "compose"]
            if engine.name == "docker"
            else [shutil.which("podman-compose", path=str(bin_dir)) or "podman-compose"]
        )
        self.cmd = [*exe, "-f", str(ROOT / "compose.yaml"), "-p", self.project]

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [*self.cmd, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        assert res.returncode == 0, f"compose {' '.join(args)}: {res.stderr[-3000:]}"
        return res

    def down(self) -> None:
        """Everything of the project: its containers, network and volumes."""
        subprocess.run([*self.cmd, "down", "-v", "-t", "5"], cwd=ROOT, env=self.env,
                       capture_output=True, timeout=300)  # fmt: skip
        label = f"label=com.docker.compose.project={self.project}"
        for kind in ("container", "volume"):
            names = self.engine(kind, "ls", "-a" if kind == "container" else "-q", "-q",
                                "--filter", label, check=False).stdout.split()  # fmt: skip
            if names:
                self.engine(kind, "rm", "-f", *names, check=False)
        self.engine("network", "rm", "-f", f"{self.project}_default", check=False)


@pytest.fixture
def compose(engine, image):
    env = {
        **engine.env,
        "PAX_ADMIN_TOKEN": ADMIN,
        "PAX_WORKER_TOKEN": WORKER,
        "PAX_PG_PASSWORD": "compose-pg-password-0123",
        "PAX_IMAGE": IMAGE,
        "PAX_PUBLISH_PORT": str(free_port()),
        "PAX_VOCABS": "512",
        "PAX_DATA_MIRROR": "",  # a host path means nothing in a container: PAX_DATA_MIRROR_DIR
    }
    if engine.name == "podman":  # no registry here: the images made from Debian's packages
        env.update(
            PAX_POSTGRES_IMAGE="localhost/pax-postgres", PAX_PROXY_IMAGE="localhost/pax-proxy"
        )
    c = Compose(engine, env)
    yield c
    c.down()


def record(what: str, seconds: float) -> None:
    out = ROOT / "test-artifacts" / "compose.json"
    out.parent.mkdir(exist_ok=True)
    got = json.loads(out.read_text()) if out.is_file() else {}
    got[what] = round(seconds, 1)
    out.write_text(json.dumps(got, indent=2) + "\n")


def fill_data(compose: Compose, shared_data: Path) -> None:
    """The data volume the workers read: made by `compose run --rm service data` through the
    offline mirror when there is one (PAX_DATA_MIRROR once never reached the containers), else
    the test tokenizer copied in."""
    if MIRROR.is_dir():
        compose.env["PAX_DATA_MIRROR_DIR"] = str(MIRROR.resolve())
        t0 = time.monotonic()
        compose("run", "--rm", "service", "data", timeout=900)
        record("data_s", time.monotonic() - t0)
        return
    volume = f"{compose.project}_data"
    compose.engine("volume", "create", volume, check=False)
    compose.engine(
        "run", "--rm", "-v", f"{volume}:/d", "-v", f"{shared_data}:/src:ro", IMAGE,
        "sh", "-c", "mkdir -p /d/lm_tokenized && cp -r /src/. /d/lm_tokenized/",
    )  # fmt: skip


def two_runs() -> str:
    """A study sweep file of two tiny runs for the workers (V=512, the volume's tokenizer)."""
    base = tiny_raw(Path("data/lm_tokenized"), max_tokens=24 * 8 * 64)
    base.pop("name")
    return yaml.safe_dump(
        {"name": "compose", "base": base, "experiments": {"a": {}, "b": {"runtime": {"seed": 2}}}}
    )


def finish_a_plan(url: str, what: str) -> dict:
    client = ready(url, ADMIN)
    sweep = client.submit_plan(two_runs(), launcher="worker")
    t0 = time.monotonic()
    done = wait_until(
        lambda: (s := client.sweep(sweep["id"]))["status"] == "done" and s,
        600,
        f"the plan finishing ({what})",
        every=2,
    )
    record(f"{what}_plan_s", time.monotonic() - t0)
    return done


def test_compose_service_and_a_cpu_worker_finish_a_plan(compose, shared_data):
    fill_data(compose, shared_data)
    t0 = time.monotonic()
    compose("--profile", "cpu", "up", "-d", "service", "worker-cpu")
    record("up_cpu_s", time.monotonic() - t0)
    done = finish_a_plan(f"http://127.0.0.1:{compose.env['PAX_PUBLISH_PORT']}", "cpu")
    assert done["runs"] == {"succeeded": 2}, done["runs"]
    # the worker's healthcheck means something: its alive file is fresh, not /healthz
    worker = f"{compose.project}_worker-cpu_1"
    alive = compose.engine("exec", worker, "pax-entrypoint", "healthy", check=False)
    assert alive.returncode == 0, alive.stderr


def test_compose_postgres_profile_two_replicas_behind_the_proxy(compose, shared_data):
    fill_data(compose, shared_data)
    t0 = time.monotonic()
    compose("--profile", "postgres", "--profile", "postgres-cpu", "up", "-d", "proxy",
            "worker-pg-cpu", timeout=900)  # fmt: skip
    record("up_postgres_s", time.monotonic() - t0)
    url = f"http://127.0.0.1:{compose.env['PAX_PUBLISH_PORT']}"
    done = finish_a_plan(url, "postgres")
    assert done["runs"] == {"succeeded": 2}, done["runs"]
    health = Client(url).health()
    assert health["database"] == "postgresql"
    replicas = compose.engine(
        "ps", "--filter", f"label=com.docker.compose.project={compose.project}",
        "--format", "{{.Names}}",
    ).stdout.split()  # fmt: skip
    assert len([r for r in replicas if "service-pg" in r]) == 2, replicas
