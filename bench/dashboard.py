#!/usr/bin/env python3
"""Dashboard speed against a real `pax serve --concurrency 0`: with 1,000 runs x 200 points in
the ledger, a smoke-plan sweep with results, and one run of 200,000 points (all seeded first),
p50/p95 of the overview page, run pages (charts included, warm cache), the sweep page, the
compare page (5 runs), the live runs fragment, and the live run page of the 200k-point run while
points arrive (each refresh re-renders its charts); then the server's load with 20 overview
pages open on a running sweep (each polls every 2 s; a writer posts points meanwhile), asking
for changed rows only (as the page does) and for the whole list (as it did). Prints one JSON
document, with the ledger's size, as its last line.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from ingest import ADMIN, SPEC, start_server  # noqa: E402

POLL_S = 2.0  # live.js's period
CHUNK = 500  # points per seeding post: under the body limit (PAX_MAX_BODY_BYTES)


def timed(client: httpx.Client, paths: list[str], n: int, headers: dict | None = None) -> dict:
    for p in paths:  # warm the chart cache and the connection
        client.get(p).raise_for_status()
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        r = client.get(paths[i % len(paths)], headers=headers)
        lat.append(time.perf_counter() - t0)
        if r.status_code not in (200, 304):
            r.raise_for_status()
    lat.sort()
    return {
        "n": n,
        "pages": len(paths),
        "status": r.status_code,
        "bytes": len(r.content),
        "p50_ms": 1e3 * statistics.median(lat),
        "p95_ms": 1e3 * lat[int(0.95 * (n - 1))],
    }


def seed(base: str, runs: int, points: int) -> list[int]:
    h = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=base + "/api/v1", headers=h, timeout=60) as c:
        # runs for workers: nothing trains here (a local run would need its data on disk)
        new = {"config": SPEC, "launcher": "worker"}
        ids = [c.post("/runs", json=new).json()["id"] for _ in range(runs)]
        for rid in ids:
            pts = [
                {
                    "step": s,
                    "tokens": s * 4096,
                    "name": "train/loss" if s % 2 else "dev/word_ppl",
                    "value": 6.0 - s / 100 if s % 2 else 900.0 - s,
                }
                for s in range(points)
            ]
            c.post(f"/runs/{rid}/metrics", json={"points": pts}).raise_for_status()
    return ids


def seed_sweep(base: str) -> int:
    """The smoke plan as a sweep (its runs for workers: nothing trains here), every ranking
    cell given a result, so the sweep page draws its charts and tables."""
    h = {"Authorization": f"Bearer {ADMIN}"}
    plan = (ROOT / "configs" / "plan_smoke.yaml").read_text()
    with httpx.Client(base_url=base + "/api/v1", headers=h, timeout=60) as c:
        yaml = {"Content-Type": "application/yaml"}
        sw = c.post("/sweeps", params={"launcher": "worker"}, content=plan, headers=yaml)
        sw.raise_for_status()
        sid = sw.json()["id"]
        rng = random.Random(1)
        for cell in c.get(f"/sweeps/{sid}").json()["cells"]:
            ppl = 200_000.0 if cell["cell"].startswith("control") else rng.uniform(90, 140)
            doc = {
                "run": {"status": "succeeded", "exit_reason": "bench"},
                "training": {"tokens_seen": 65536},
                "dev": {"token_ppl": ppl / 2, "word_ppl": ppl, "bits_per_byte": 1.1},
                "latency": {"seq128": {"median_ms": rng.uniform(10, 30)}},
                "provenance": {"sample": False},
            }
            r = c.post(f"/runs/{cell['run_id']}/result", json=doc)
            if r.status_code != 200:
                raise RuntimeError(f"result of run {cell['run_id']}: {r.status_code} {r.text}")
    return sid


def seed_long(base: str, points: int) -> int:
    h = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=base + "/api/v1", headers=h, timeout=120) as c:
        new = {"config": {**SPEC, "name": "bench-long"}, "launcher": "worker"}
        rid = c.post("/runs", json=new).json()["id"]
        for lo in range(0, points, CHUNK):
            pts = [
                {"step": s, "tokens": s * 4096, "name": "train/loss", "value": 3 + 1 / (s + 1)}
                for s in range(lo, min(points, lo + CHUNK))
            ]
            pts += [
                {
                    "step": s,
                    "tokens": s * 4096,
                    "name": "dev/word_ppl",
                    "value": 100 + 1e4 / (s + 1),
                }
                for s in range(lo, min(points, lo + CHUNK), 100)
            ]
            c.post(f"/runs/{rid}/metrics", json={"points": pts}).raise_for_status()
    return rid


def writer(base: str, stop: threading.Event, pick_run, period_s: float) -> threading.Thread:
    """A thread posting one train/loss point to pick_run() every period_s until `stop`: the
    training runs of a live sweep."""

    def loop():
        h = {"Authorization": f"Bearer {ADMIN}"}
        step = 10_000_000
        with httpx.Client(base_url=base + "/api/v1", headers=h, timeout=30) as c:
            while not stop.is_set():
                step += 1
                pt = {"step": step, "tokens": step * 4096, "name": "train/loss", "value": 3.0}
                c.post(f"/runs/{pick_run()}/metrics", json={"points": [pt]})
                stop.wait(period_s)

    return threading.Thread(target=loop)


def live_run_page(base: str, rid: int, seconds: float) -> dict:
    """The live fragment of a long run's page while a writer posts a point every 0.25 s: every
    refresh that follows a point re-renders both charts."""
    stop = threading.Event()
    t = writer(base, stop, lambda: rid, 0.25)
    t.start()
    lat, codes = [], {}
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            tag = None
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                r = c.get(f"/fragments/runs/{rid}", headers={"If-None-Match": tag} if tag else None)
                lat.append(time.perf_counter() - t0)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                tag = r.headers.get("etag", tag)
                time.sleep(0.1)
    finally:
        stop.set()
        t.join()
    lat.sort()
    return {
        "n": len(lat),
        "rendered": codes.get(200, 0),
        "not_modified": codes.get(304, 0),
        "p50_ms": 1e3 * statistics.median(lat),
        "p95_ms": 1e3 * lat[int(0.95 * (len(lat) - 1))],
    }


def live_load(base: str, pid: int, ids: list[int], pages: int, seconds: float, since: bool):
    """`pages` open overview pages polling the runs fragment every POLL_S (asking for the rows
    changed since their last answer, like live.js, or for the whole list, as before), while a
    writer posts a point to one of 20 running runs every 0.5 s: the server's CPU share, the
    requests served, how many had nothing new (204), and the bytes sent."""
    proc = psutil.Process(pid)
    stop = threading.Event()
    counts = {"200": 0, "204": 0, "bytes": 0}
    lat: list[float] = []
    lock = threading.Lock()

    def page(k: int):
        with httpx.Client(base_url=base, timeout=30) as c:
            mark = c.get("/fragments/runs").headers["x-pax-now"]  # the page as first served
            time.sleep(POLL_S * k / pages)  # pages opened at different moments
            while not stop.is_set():
                t0 = time.perf_counter()
                r = c.get("/fragments/runs", params={"since": mark} if since else None)
                with lock:
                    lat.append(time.perf_counter() - t0)
                    counts[str(r.status_code)] = counts.get(str(r.status_code), 0) + 1
                    counts["bytes"] += len(r.content)
                mark = r.headers.get("x-pax-now", mark)
                stop.wait(POLL_S)

    threads = [threading.Thread(target=page, args=(k,)) for k in range(pages)]
    threads.append(writer(base, stop, lambda: random.choice(ids[:20]), 0.5))
    cpu0 = sum(proc.cpu_times()[:2])
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    lat.sort()
    requests = counts["200"] + counts["204"]
    return {
        "pages": pages,
        "changed_rows_only": since,
        "seconds": wall,
        "requests": requests,
        "nothing_new_share": counts["204"] / max(1, requests),
        "bytes_per_request": counts["bytes"] / max(1, requests),
        "server_cpu_s": cpu,
        "server_cpu_pct": 100 * cpu / wall,
        "p95_ms": 1e3 * lat[int(0.95 * (len(lat) - 1))] if lat else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--series-points", type=int, default=200_000, help="The long run's points.")
    ap.add_argument("--live-pages", type=int, default=20)
    ap.add_argument("--live-s", type=float, default=20.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pax-dash-") as tmp:
        ledger = str(Path(tmp) / "bench.db")
        server, port = start_server(ledger, Path(tmp))
        base = f"http://127.0.0.1:{port}"
        try:
            t0 = time.perf_counter()
            ids = seed(base, args.runs, args.points)
            sweep = seed_sweep(base)
            long_id = seed_long(base, args.series_points)
            seed_s = time.perf_counter() - t0
            rng = random.Random(0)
            compare = [
                "/compare?runs=" + ",".join(str(i) for i in rng.sample(ids, 5)) for _ in range(20)
            ]
            with httpx.Client(base_url=base, timeout=60) as c:
                tag = c.get("/fragments/runs").headers["etag"]
                out = {
                    "benchmark": "dashboard",
                    "runs": args.runs,
                    "points_per_run": args.points,
                    "ledger_points": args.runs * args.points + args.series_points,
                    "ledger_bytes": Path(ledger).stat().st_size,
                    "seed_s": seed_s,
                    "overview": timed(c, ["/"], args.n),
                    "overview_filtered": timed(c, ["/?status=queued"], args.n),
                    "run_page_warm": timed(
                        c, [f"/runs/{rng.choice(ids)}" for _ in range(20)], args.n
                    ),
                    "compare_5_runs": timed(c, compare, args.n),
                    "sweep_page": timed(c, [f"/sweeps/{sweep}"], args.n),
                    "run_page_200k_points_warm": timed(c, [f"/runs/{long_id}"], args.n),
                    "runs_fragment": timed(c, ["/fragments/runs"], args.n),
                    "runs_fragment_not_modified": timed(
                        c, ["/fragments/runs"], args.n, headers={"If-None-Match": tag}
                    ),
                }
            out["live_run_page_200k_points"] = live_run_page(base, long_id, args.live_s)
            out["live_20_pages"] = {
                "changed_rows": live_load(
                    base, server.pid, ids, args.live_pages, args.live_s, True
                ),
                "whole_list": live_load(base, server.pid, ids, args.live_pages, args.live_s, False),
            }
            out["targets"] = {
                "overview_p95_ms": 100,
                "compare_p95_ms": 150,
                "run_page_p95_ms": 150,
                "live_run_page_200k_p95_ms": 30,
                "met": out["overview"]["p95_ms"] <= 100
                and out["compare_5_runs"]["p95_ms"] <= 150
                and out["run_page_warm"]["p95_ms"] <= 150
                and out["live_run_page_200k_points"]["p95_ms"] <= 30,
            }
            print(json.dumps(out))
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
