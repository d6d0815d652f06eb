#!/usr/bin/env python3
"""Dashboard speed against a real `pax serve --concurrency 0`: with 1,000 runs x 200 points in
the ledger, the overview page and run pages (charts included, warm cache), p50/p95. Prints one
JSON document as its last line.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from ingest import ADMIN, SPEC, start_ledger_server  # noqa: E402


def timed(client: httpx.Client, paths: list[str], n: int) -> dict:
    for p in paths:  # warm the chart cache and the connection
        client.get(p).raise_for_status()
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        r = client.get(paths[i % len(paths)])
        lat.append(time.perf_counter() - t0)
        r.raise_for_status()
    lat.sort()
    return {
        "n": n,
        "pages": len(paths),
        "bytes": len(r.content),
        "p50_ms": 1e3 * statistics.median(lat),
        "p95_ms": 1e3 * lat[int(0.95 * (n - 1))],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("-n", type=int, default=200)
    args = ap.parse_args()
    server, base = start_ledger_server("pax-dash-")
    try:
        t0 = time.perf_counter()
        h = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=base + "/api/v1", headers=h, timeout=60) as c:
            ids = [c.post("/runs", json=SPEC).json()["id"] for _ in range(args.runs)]
            for rid in ids:
                pts = [
                    {
                        "step": s,
                        "tokens": s * 4096,
                        "name": "train/loss" if s % 2 else "dev/word_ppl",
                        "value": 6.0 - s / 100 if s % 2 else 900.0 - s,
                    }
                    for s in range(args.points)
                ]
                c.post(f"/runs/{rid}/metrics", json={"points": pts}).raise_for_status()
        seed_s = time.perf_counter() - t0
        rng = random.Random(0)
        with httpx.Client(base_url=base, timeout=60) as c:
            out = {
                "benchmark": "dashboard",
                "runs": args.runs,
                "points_per_run": args.points,
                "seed_s": seed_s,
                "overview": timed(c, ["/"], args.n),
                "overview_filtered": timed(c, ["/?status=queued"], args.n),
                "run_page_warm": timed(c, [f"/runs/{rng.choice(ids)}" for _ in range(20)], args.n),
                "runs_fragment": timed(c, ["/fragments/runs"], args.n),
                "targets": {"overview_p95_ms": 100, "run_page_p95_ms": 150},
            }
        print(json.dumps(out))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
