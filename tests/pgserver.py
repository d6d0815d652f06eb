"""A throwaway PostgreSQL server for the tests and benchmarks: Debian's `postgresql` package,
`initdb` into a temporary folder, listening on 127.0.0.1 at a free port, removed on `stop`.

initdb refuses to run as root, so as root the cluster belongs to the `postgres` user (run
through `runuser`). The server keeps PostgreSQL's durable defaults (fsync, synchronous_commit=on)
unless `durable=False` is asked for, which the test suite does to spare the disk; benchmarks
never do.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

USER = "pax"


def server_bin() -> Path | None:
    """The newest installed server's bin folder (/usr/lib/postgresql/<major>/bin), or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class ScratchPostgres:
    root: Path
    port: int
    bin: Path

    @property
    def url(self) -> str:
        """The server's maintenance database, as its superuser: where databases are made."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run(
            _as_owner([str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                       "-w", "stop"]),
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    """A new database on the server of `admin_url` (a user who may create databases), empty or
    a copy of `template`, replacing one of that name; its URL."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_databases(admin_url: str, prefix: str) -> None:
    """Drop every database whose name starts with `prefix` (a test session's, at its end)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as c:
        names = c.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
        ).fetchall()
        for (name,) in names:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start(durable: bool = True, timeout_s: float = 60.0) -> ScratchPostgres:
    """initdb + start; raises RuntimeError saying what is missing or what the server said."""
    bin_dir = server_bin()
    if bin_dir is None:
        raise RuntimeError(
            "no PostgreSQL server: apt-get install postgresql (or set PAX_TEST_DATABASE_URL)"
        )
    root = Path(tempfile.mkdtemp(prefix="pax-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, log = root / "data", root / "server.log"
    subprocess.run(
        _as_owner([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER,
                   "-E", "UTF8", "--no-instructions"]),
        check=True, capture_output=True,
    )  # fmt: skip
    port = _free_port()
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root}"
    opts += " -c max_connections=300"
    if not durable:
        opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    server = ScratchPostgres(root=root, port=port, bin=bin_dir)
    p = subprocess.run(
        _as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts,
                   "-w", "-t", str(int(timeout_s)), "start"]),
        capture_output=True, text=True,
    )  # fmt: skip
    if p.returncode != 0:
        said = log.read_text()[-2000:] if log.is_file() else p.stderr
        server.stop()
        raise RuntimeError(f"PostgreSQL did not start: {said}")
    deadline = time.monotonic() + timeout_s
    while True:  # pg_ctl -w waited for the socket; the TCP listener may trail it
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return server
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"PostgreSQL did not listen on 127.0.0.1:{port}")
        time.sleep(0.1)
