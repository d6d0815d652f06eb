#!/usr/bin/env python3
"""Ledger speed on SQLite and PostgreSQL side by side, against real `pax serve --concurrency 0`
processes on 127.0.0.1, and with two service replicas on one PostgreSQL ledger.

Each ledger is seeded first, to the size being measured: --runs runs of --points points each,
plus one long run of --series-points points (`train/loss` logged every step), written through
the ledger's own code (--ledger reuses a seeded SQLite file). Then, on that ledger: single-point
metric posts (1 and 8 concurrent clients: req/s, p50/p95), 100-point batches from 8 clients
(points/s), GET /runs (default page, all 1,000, filtered, a keyset page), the long series read
at 500 points, the claim rate of 8 concurrent claimers draining 1,000 queued runs (claims/s,
and double claims: must be 0), and the server's peak RSS (during the reads, and overall). The
ledger's size (points, bytes) is printed with the figures.

Durability stays as deployed: SQLite synchronous=FULL; PostgreSQL with its defaults (fsync on,
synchronous_commit=on). PostgreSQL is --database-url (a server URL whose user may create
databases; each measurement gets a fresh one), else a scratch server started from Debian's
postgresql package, else that half is skipped and says why. The clients are a minimal asyncio
HTTP/1.1 keep-alive loop, so they cost the machine's cores as little as possible. Prints one
JSON document as its last line.

    python bench/ingest.py [--database-url postgresql://pax@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from pax.client import free_port, start_service
from runner.ledger.runs import create_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.pgserver: the scratch PostgreSQL the suite uses too
ADMIN = "bench-admin-token-0123456789"
SPEC = {"name": "bench", "max_tokens": 5_000_000}


class RawClient:
    """One keep-alive HTTP/1.1 connection; just enough protocol for this benchmark."""

    def __init__(self, port: int):
        self.port = port

    async def open(self):
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.w.write(head.encode() + body)
        await self.w.drain()
        status_line = await self.r.readline()
        length = 0
        while True:
            line = await self.r.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        data = await self.r.readexactly(length)
        return int(status_line.split()[1]), data

    async def close(self):
        self.w.close()


async def hammer(ports: list[int], clients: int, seconds: float, make_body, run_ids) -> dict:
    lat: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    # bodies are made before the clock starts: the clients share the server's two cores
    pool = [[make_body(i, step) for step in range(4000)] for i in range(clients)]

    async def one(i: int):
        nonlocal errors
        c = RawClient(ports[i % len(ports)])  # clients spread over the replicas
        await c.open()
        step = 0
        rid = run_ids[i % len(run_ids)]
        while time.perf_counter() < deadline:
            body = pool[i][step % len(pool[i])]
            t0 = time.perf_counter()
            status, _ = await c.request("POST", f"/api/v1/runs/{rid}/metrics", body)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                errors += 1
            step += 1
        await c.close()

    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "clients": clients,
        "requests": len(lat),
        "errors": errors,
        "req_per_s": len(lat) / wall,
        "p50_ms": 1e3 * lat[len(lat) // 2],
        "p95_ms": 1e3 * lat[int(0.95 * (len(lat) - 1))],
    }


def single_point(i: int, step: int) -> bytes:
    return json.dumps(
        {
            "points": [
                {
                    "step": step,
                    "tokens": step * 4096,
                    "name": f"train/loss{i}",
                    "value": 1.0 / (step + 1),
                }
            ]
        }
    ).encode()


def batch_100(i: int, step: int) -> bytes:
    base = step * 100
    return json.dumps(
        {
            "points": [
                {"step": base + j, "tokens": (base + j) * 4096, "name": f"batch/m{i}", "value": 0.5}
                for j in range(100)
            ]
        }
    ).encode()


def timed_gets(url: str, n: int, params: dict, key: str = "items") -> dict:
    lat = []
    with httpx.Client(timeout=60) as c:
        for _ in range(3):
            r = c.get(url, params=params)
        if r.status_code != 200:  # e.g. an older server without this parameter
            return {"error": f"{r.status_code}: {r.text[:200]}"}
        for _ in range(n):
            t0 = time.perf_counter()
            r = c.get(url, params=params)
            lat.append(time.perf_counter() - t0)
            r.raise_for_status()
    lat.sort()
    return {
        "n": n,
        "items": len(r.json()[key]),
        "p50_ms": 1e3 * statistics.median(lat),
        "p95_ms": 1e3 * lat[int(0.95 * (n - 1))],
    }


async def claim_all(ports: list[int], claimers: int) -> dict:
    """`claimers` clients POST /claim until the queue is empty: claims/s and doubles."""
    got: list[int] = []
    errors = 0

    async def one(i: int):
        nonlocal errors
        c = RawClient(ports[i % len(ports)])
        await c.open()
        body = json.dumps({"worker": f"bench{i}"}).encode()
        while True:
            status, data = await c.request("POST", "/api/v1/claim", body)
            if status == 204:
                break
            if status != 200:
                errors += 1
                continue
            got.append(json.loads(data)["run_id"])
        await c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(claimers)))
    wall = time.perf_counter() - t0
    return {
        "claimers": claimers,
        "claims": len(got),
        "claims_per_s": len(got) / wall,
        "double_claims": len(got) - len(set(got)),
        "errors": errors,
    }


class Ledgers:
    """Fresh ledgers: SQLite files, and PostgreSQL databases on one server."""

    def __init__(self, pg_url: str | None, start_pg: bool):
        self.tmp = Path(tempfile.mkdtemp(prefix="pax-bench-"))
        self.n = 0
        self.scratch = None
        self.pg_admin, self.pg_why = pg_url, None
        if not pg_url and start_pg:
            from tests import pgserver

            try:
                self.scratch = pgserver.start(durable=True)  # as deployed: fsync, sync commit
                self.pg_admin = self.scratch.url
            except (RuntimeError, OSError) as e:
                self.pg_why = str(e)
        elif not pg_url:
            self.pg_why = "no --database-url given (and --no-start-postgres)"

    def sqlite(self) -> str:
        self.n += 1
        return str(self.tmp / f"ledger{self.n}" / "pax.db")

    def postgres(self) -> str:
        from tests.pgserver import create_database

        self.n += 1
        return create_database(self.pg_admin, f"pax_bench_{os.getpid()}_{self.n}")

    def pg_facts(self) -> dict:
        import psycopg

        with psycopg.connect(self.pg_admin) as c:
            return {
                "server_version": c.execute("SHOW server_version").fetchone()[0],
                "synchronous_commit": c.execute("SHOW synchronous_commit").fetchone()[0],
                "fsync": c.execute("SHOW fsync").fetchone()[0],
            }

    def close(self) -> None:
        if self.scratch is not None:
            self.scratch.stop()


def start_server(ledger: str, cwd: Path) -> tuple[subprocess.Popen, int]:
    """A real `pax serve --concurrency 0` on a free port, once healthy."""
    cwd.mkdir(parents=True, exist_ok=True)
    port = free_port()
    where = {"PAX_DATABASE_URL": ledger} if "://" in ledger else {"PAX_DB": ledger}
    env = {
        "PYTHONPATH": str(ROOT),
        "PAX_ADMIN_TOKEN": ADMIN,
        "PAX_CONCURRENCY": "0",
        # the queue's 1,000 claimed runs are a worker's to run: the scheduler's own judging of
        # them is not what is measured here
        "PAX_TICK_S": "3600",
        **where,
    }
    return start_service(env, port=port, cwd=cwd, timeout_s=60), port


def queue_runs(ledger: str, n: int, name: str = "bench") -> list[int]:
    """`n` queued runs, written through the ledger's own code (submission is not measured)."""
    from runner.ledger.db import make_engine
    from trainer.config import validate

    engine = make_engine(ledger)
    try:
        cfg = validate({**SPEC, "name": name})
        return [create_run(engine, cfg=cfg).id for _ in range(n)]
    finally:
        engine.dispose()


NAMES = ("train/loss", "train/lr", "dev/token_ppl", "dev/word_ppl")


def seed(ledger: str, args) -> dict:
    """The ledger at the size to measure, through its own write path (points and their
    summaries as ingest keeps them): --runs x --points, and one run of --series-points."""
    from runner.ledger.db import make_engine, upgrade, write_connection
    from runner.ledger.ingest import write_points

    t0 = time.perf_counter()
    if "://" not in ledger:
        Path(ledger).parent.mkdir(parents=True, exist_ok=True)
    upgrade(ledger)
    ids = queue_runs(ledger, args.runs)
    (long_id,) = queue_runs(ledger, 1, name="bench-long")
    engine = make_engine(ledger)
    try:
        for i in range(0, len(ids), 50):  # 50 runs a transaction
            with write_connection(engine) as conn:
                for rid in ids[i : i + 50]:
                    rows = [
                        (NAMES[s % 4], s, s * 4096, 1.0 + 1 / (s + 1)) for s in range(args.points)
                    ]
                    write_points(conn, rid, rows)
        for lo in range(0, args.series_points, 20_000):
            hi = min(args.series_points, lo + 20_000)
            with write_connection(engine) as conn:
                spiky = [
                    ("train/loss", s, s * 4096, 3.0 + (5.0 if s % 997 == 0 else 0.0) + 1 / (s + 1))
                    for s in range(lo, hi)
                ]
                write_points(conn, long_id, spiky)
    finally:
        engine.dispose()
    return {"ids": ids, "long": long_id, "seed_s": time.perf_counter() - t0}


def reuse(ledger: str) -> dict:
    """The runs of a ledger seeded by an earlier run of this benchmark."""
    from sqlalchemy import text

    from runner.ledger.db import make_engine

    engine = make_engine(ledger)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, name FROM runs ORDER BY id")).all()
    finally:
        engine.dispose()
    long_id = next(i for i, n in rows if n == "bench-long")
    return {"ids": [i for i, n in rows if n == "bench"], "long": long_id, "seed_s": 0.0}


def ledger_size(ledger: str) -> dict:
    from sqlalchemy import text

    from runner.ledger.db import make_engine

    engine = make_engine(ledger)
    try:
        with engine.connect() as conn:
            points = conn.execute(text("SELECT count(*) FROM metric_points")).scalar()
            runs = conn.execute(text("SELECT count(*) FROM runs")).scalar()
            if "://" in ledger:
                size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
            else:
                size = sum(
                    p.stat().st_size for p in Path(ledger).parent.glob(Path(ledger).name + "*")
                )
    finally:
        engine.dispose()
    return {"runs": runs, "points": points, "bytes": size}


def measure(ledger: str, cwd: Path, replicas: int, args) -> dict:
    seeded = reuse(ledger) if args.ledger and Path(args.ledger).is_file() else seed(ledger, args)
    servers = [start_server(ledger, cwd / f"r{i}") for i in range(replicas)]
    ports = [port for _, port in servers]
    api = f"http://127.0.0.1:{ports[0]}/api/v1"
    peak = {"rss": 0}
    stop = threading.Event()

    def sample():
        procs = [psutil.Process(s.pid) for s, _ in servers]
        while not stop.is_set():
            try:
                peak["rss"] = max(peak["rss"], max(p.memory_info().rss for p in procs))
            except psutil.Error:
                return
            time.sleep(0.05)

    out: dict = {"replicas": replicas, "ledger": ledger_size(ledger)}
    try:
        threading.Thread(target=sample, daemon=True).start()
        ids = seeded["ids"]
        if replicas == 1:
            out["single_point_1_client"] = asyncio.run(
                hammer(ports, 1, args.seconds, single_point, ids[:8])
            )
        out["single_point_8_clients"] = asyncio.run(
            hammer(ports, 8, args.seconds, single_point, ids[:8])
        )
        b = asyncio.run(hammer(ports, 8, args.seconds, batch_100, ids[:8]))
        b["points_per_s"] = b["req_per_s"] * 100
        out["batch_100_8_clients"] = b
        if replicas == 1:  # reads, on the seeded ledger
            peak["rss"] = 0
            out["list_runs_default_page"] = timed_gets(api + "/runs", 100, {})
            out["list_runs_1000"] = timed_gets(api + "/runs", 50, {"limit": 1000})
            out["list_runs_filtered"] = timed_gets(
                api + "/runs", 100, {"status": "queued", "limit": 50}
            )
            out["list_runs_keyset_page"] = timed_gets(
                api + "/runs", 100, {"before_id": ids[len(ids) // 2], "limit": 100}
            )
            out["series_read_500"] = timed_gets(
                api + f"/runs/{seeded['long']}/metrics",
                100,
                {"name": "train/loss", "max_points": 500},
                key="points",
            )
            out["server_peak_rss_reads_mib"] = peak["rss"] / 2**20
        out["seed_s"] = seeded["seed_s"]
        out["claims_8_claimers"] = asyncio.run(claim_all(ports, 8))
        out["server_peak_rss_mib"] = peak["rss"] / 2**20
        return out
    finally:
        stop.set()
        for s, _ in servers:
            s.terminate()
            s.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--points", type=int, default=200, help="Points per run.")
    ap.add_argument(
        "--series-points", type=int, default=200_000, help="Points of the one long run."
    )
    ap.add_argument(
        "--ledger",
        help="A SQLite file: seeded on first use, reused as it is after (SQLite only).",
    )
    ap.add_argument(
        "--database-url",
        default=os.environ.get("PAX_BENCH_DATABASE_URL"),
        help="A PostgreSQL server (its user may create databases); default: a scratch server.",
    )
    ap.add_argument("--no-start-postgres", action="store_true", help="SQLite only, unless a URL.")
    ap.add_argument(
        "--only", choices=["sqlite", "postgresql"], help="Measure one backend (default both)."
    )
    args = ap.parse_args()
    ledgers = Ledgers(args.database_url, start_pg=not args.no_start_postgres)
    out: dict = {"benchmark": "ingest", "cpu_count": os.cpu_count()}
    try:
        if args.only != "postgresql":
            out["sqlite"] = {
                "durability": "WAL, synchronous=FULL",
                **measure(args.ledger or ledgers.sqlite(), ledgers.tmp / "sqlite", 1, args),
            }
        if args.only != "sqlite":
            if ledgers.pg_admin is None:
                out["postgresql"] = {"skipped": ledgers.pg_why}
            else:
                facts = ledgers.pg_facts()
                out["postgresql"] = {
                    **facts,
                    **measure(ledgers.postgres(), ledgers.tmp / "pg", 1, args),
                }
                out["postgresql_2_replicas"] = measure(
                    ledgers.postgres(), ledgers.tmp / "pg2", 2, args
                )
                one = out["postgresql"]["single_point_8_clients"]["req_per_s"]
                two = out["postgresql_2_replicas"]["single_point_8_clients"]["req_per_s"]
                out["postgresql_2_replicas"]["single_point_speedup_vs_one"] = two / one
    finally:
        ledgers.close()
    out["targets"] = {
        "sqlite_req_per_s_8_clients": 500,
        "points_per_s": 50_000,
        "list_p95_ms": 50,
        "series_read_500_p95_ms": 20,
        "rss_reads_mib": 150,
        "rss_mib": 300,
        "postgresql_batched_points_per_s": 50_000,
        "two_replicas_single_point_speedup": 1.5,
        "claims_per_s": 200,
        "double_claims": 0,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
