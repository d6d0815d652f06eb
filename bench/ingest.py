#!/usr/bin/env python3
"""Ledger ingest and list speed against a real `pax serve --concurrency 0` on 127.0.0.1.

Measures: single-point metric posts (1 and 8 concurrent clients: req/s, p50/p95), 100-point
batches (points/s), GET /runs with 1,000 runs holding 200 points each (p50/p95, default page
and the full 1,000), and the server's peak RSS. synchronous=FULL stays on (the service's
default). The clients are a minimal asyncio HTTP/1.1 keep-alive loop, so they cost the server's
two cores as little as possible. Prints one JSON document as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "bench-admin-token-0123456789"
SPEC = {"name": "bench", "max_tokens": 5_000_000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


async def hammer(port: int, clients: int, seconds: float, make_body, run_ids) -> dict:
    lat: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    # bodies are made before the clock starts: the clients share the server's two cores
    pool = [[make_body(i, step) for step in range(4000)] for i in range(clients)]

    async def one(i: int):
        nonlocal errors
        c = RawClient(port)
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


def timed_gets(url: str, n: int, params: dict) -> dict:
    lat = []
    with httpx.Client(timeout=60) as c:
        for _ in range(3):
            c.get(url, params=params)
        for _ in range(n):
            t0 = time.perf_counter()
            r = c.get(url, params=params)
            lat.append(time.perf_counter() - t0)
            r.raise_for_status()
    lat.sort()
    return {
        "n": n,
        "items": len(r.json()["items"]),
        "p50_ms": 1e3 * statistics.median(lat),
        "p95_ms": 1e3 * lat[int(0.95 * (n - 1))],
    }


def start_ledger_server(prefix: str) -> tuple[subprocess.Popen, str]:
    """A real `pax serve --concurrency 0` on a free port with a fresh ledger, once healthy."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PAX_ADMIN_TOKEN": ADMIN,
        "PAX_DB": str(tmp / "pax.db"),
        "PAX_PORT": str(port),
        "PAX_CONCURRENCY": "0",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "pax.cli", "serve"],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError("pax serve did not come up")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--points", type=int, default=200)
    args = ap.parse_args()
    server, base = start_ledger_server("pax-bench-")
    port = int(base.rsplit(":", 1)[1])
    api = f"{base}/api/v1"
    peak = {"rss": 0}
    stop = threading.Event()

    def sample():
        p = psutil.Process(server.pid)
        while not stop.is_set():
            try:
                peak["rss"] = max(peak["rss"], p.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    try:
        threading.Thread(target=sample, daemon=True).start()
        h = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=api, headers=h, timeout=60) as c:
            ids = [c.post("/runs", json=SPEC).json()["id"] for _ in range(8)]
        out: dict = {"benchmark": "ingest", "synchronous": "FULL", "journal_mode": "WAL"}
        out["single_point_1_client"] = asyncio.run(hammer(port, 1, args.seconds, single_point, ids))
        out["single_point_8_clients"] = asyncio.run(
            hammer(port, 8, args.seconds, single_point, ids)
        )
        b = asyncio.run(hammer(port, 8, args.seconds, batch_100, ids))
        b["points_per_s"] = b["req_per_s"] * 100
        out["batch_100_8_clients"] = b

        # the list page: 1,000 runs x 200 points
        t0 = time.perf_counter()
        with httpx.Client(base_url=api, headers=h, timeout=60) as c:
            run_ids = [c.post("/runs", json=SPEC).json()["id"] for _ in range(args.runs - 8)]
            names = ("train/loss", "train/lr", "dev/token_ppl", "dev/word_ppl")
            for rid in run_ids + ids:
                pts = [
                    {"step": s, "tokens": s * 4096, "name": names[s % 4], "value": 1.0}
                    for s in range(args.points)
                ]
                c.post(f"/runs/{rid}/metrics", json={"points": pts}).raise_for_status()
        out["seed_s"] = time.perf_counter() - t0
        out["list_runs_default_page"] = timed_gets(api + "/runs", 100, {})
        out["list_runs_1000"] = timed_gets(api + "/runs", 50, {"limit": 1000})
        out["list_runs_filtered"] = timed_gets(
            api + "/runs", 100, {"status": "queued", "limit": 50}
        )
        out["server_peak_rss_mib"] = peak["rss"] / 2**20
        out["targets"] = {
            "req_per_s_8_clients": 500,
            "points_per_s": 50_000,
            "list_p95_ms": 50,
            "rss_mib": 300,
        }
        stop.set()
        print(json.dumps(out))
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
