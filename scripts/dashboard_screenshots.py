#!/usr/bin/env python3
"""Screenshots of every dashboard page from a ledger (default: the demo's), for docs/.

scripts/dashboard_screenshots.py --db var/demo/pax.db --out docs/screenshots

Serves a copy of the ledger (`pax serve --concurrency 0`: nothing is launched or changed) on a
free 127.0.0.1 port and photographs the overview, the first sweep, its baseline run and a
killed run, a comparison of its finalists (or first runs), the cost page and a 404, at 1400 px
and 390 px, plus the sweep and compare pages in dark mode. Needs playwright and chromium.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import _bootstrap  # noqa: F401
import httpx

from pax.client import free_port, start_service
from runner.release.page import CHROMIUM_FLAGS, chromium

ROOT = Path(__file__).resolve().parents[1]


def pages(base: str) -> dict[str, str]:
    runs = httpx.get(base + "/api/v1/runs", params={"limit": 1000}).json()["items"]
    sweeps = httpx.get(base + "/api/v1/sweeps").json()
    out = {"overview": "/", "cost": "/cost", "notfound": "/runs/999999"}
    if runs:
        first = min(r["id"] for r in runs)
        killed = [r["id"] for r in runs if r["status"] == "killed"]
        out["run"] = f"/runs/{first}"
        if killed:
            out["run_killed"] = f"/runs/{killed[0]}"
    if sweeps:
        sid = sweeps[0]["id"]
        out["sweep"] = f"/sweeps/{sid}"
        mine = [r for r in runs if r.get("sweep_id") == sid]
        fin = [r["id"] for r in mine if r.get("phase") == "finalists"]
        pick = sorted(fin or [r["id"] for r in mine])[:6]
        if pick:
            out["compare"] = "/compare?runs=" + ",".join(map(str, pick))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", type=Path, default=ROOT / "var/demo/pax.db")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/screenshots")
    args = ap.parse_args()
    if not args.db.is_file():
        sys.exit(f"error: --db {args.db} does not exist; `make demo` writes var/demo/pax.db")
    exe = chromium()
    if exe is None:
        sys.exit("error: no chromium found (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pax-shots-") as tmp:
        db = Path(tmp) / "pax.db"
        shutil.copy2(args.db, db)
        port = free_port()
        env = {"PYTHONPATH": str(ROOT), "PAX_DB": str(db), "PAX_CONCURRENCY": "0"}
        server = start_service(env, port=port, cwd=tmp, timeout_s=60)
        base = f"http://127.0.0.1:{port}"
        try:
            shots = pages(base)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS)
                for width, scheme, names in (
                    (1400, "light", shots),
                    (390, "light", shots),
                    (1400, "dark", [n for n in ("sweep", "compare") if n in shots]),
                ):
                    ctx = browser.new_context(
                        viewport={"width": width, "height": 900}, color_scheme=scheme
                    )
                    page = ctx.new_page()
                    for name in names:
                        page.goto(base + shots[name])
                        suffix = "" if width == 1400 else f"_{width}"
                        suffix += "_dark" if scheme == "dark" else ""
                        path = args.out / f"{name}{suffix}.png"
                        page.screenshot(path=str(path), full_page=True)
                        print(path)
                    ctx.close()
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
