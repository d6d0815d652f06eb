"""The gate: bodies refused before they are read, tokens compared as bytes, who may call
what, the security headers and the Host allow-list, docs without a CDN."""

from pathlib import Path

import psutil
import pytest

from tests.helpers import raw_post, tiny_raw
from tests.runner.conftest import ADMIN, post_run

MB = 2**20


@pytest.mark.slow
def test_oversized_bodies_are_refused_before_they_are_read(service_factory):
    svc = service_factory()
    run = post_run(svc, tiny_raw(Path("/tmp")), launcher="worker")  # no data: not local
    server = psutil.Process(svc.proc.pid)
    baseline = server.memory_info().rss
    big = str(57 * MB)
    for path in ("/metrics", "", "/result", "/heartbeat"):
        target = f"/api/v1/runs/{run['id']}{path}" if path else "/api/v1/runs"
        for token in (None, "bogus-token-0123456789abcdef"):
            headers = {"Content-Length": big, "Content-Type": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            status, text = raw_post(svc.url, target, headers, b'{"points": [')
            assert status == 413, (target, token, text)
    # no declared length (chunked): who is calling is decided before a byte is read
    chunked = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    status, _ = raw_post(svc.url, f"/api/v1/runs/{run['id']}/metrics", chunked)
    assert status == 401
    bad = {**chunked, "Authorization": "Bearer bogus-token-0123456789abcdef"}
    assert raw_post(svc.url, f"/api/v1/runs/{run['id']}/metrics", bad)[0] == 403
    assert raw_post(svc.url, "/api/v1/runs", bad)[0] == 403

    # the admin's own chunked body is read only up to the metrics limit (4 MiB), then refused
    def chunks():
        piece = b" " * MB
        for _ in range(20):
            yield piece

    import httpx

    r = httpx.post(
        f"{svc.api}/runs/{run['id']}/metrics",
        content=chunks(),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413 and "split it" in r.json()["detail"]
    assert server.memory_info().rss < baseline + 50 * MB


def test_workers_claim_with_their_own_token_and_nothing_more(service, tokenized_dir):
    worker = (service.db.with_name(service.db.name + ".worker_token")).read_text().strip()
    assert worker != ADMIN
    run = post_run(service, tiny_raw(tokenized_dir.parent))
    claim = service.post("/claim", token=worker, json={"worker": "gpu-box-1"})
    assert claim.status_code == 200 and claim.json()["run_id"] == run["id"]
    for path, body in (
        ("/runs", tiny_raw(tokenized_dir.parent)),
        ("/sweeps", "name: x"),
        (f"/runs/{run['id']}/cancel", None),
    ):
        r = service.post(path, token=worker, json=body)
        assert r.status_code == 403, (path, r.text)


def test_tokens_are_compared_as_bytes_and_short_ones_refused(service):
    for token in ("\xa0", " ", "é" * 20, "\u202e" * 30):
        r = service.http.post(
            service.api + "/runs",
            json={},
            headers={"Authorization": b"Bearer " + token.encode("utf-8")},
        )
        assert r.status_code in (401, 403), (token, r.status_code, r.text)


def test_security_headers_and_a_host_allow_list(service):
    r = service.page("/")
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    evil = service.http.get("/", headers={"Host": "evil.example"})
    assert evil.status_code == 400


def test_docs_are_served_without_a_cdn(service):
    page = service.page("/docs")
    assert page.status_code == 200 and "https://" not in page.text and "<script>" not in page.text
    for src in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        assert src in page.text and service.page(src).status_code == 200


def test_a_500_carries_the_security_headers_and_no_internals(tmp_path):
    """Answered past every middleware by Starlette's outermost layer: the headers were lost."""
    from fastapi import APIRouter
    from fastapi.testclient import TestClient

    from runner.app import create_app
    from runner.settings import Settings

    broken = APIRouter()

    @broken.get("/broken")
    def _broken():
        raise RuntimeError("secret internals")

    settings = Settings(
        db=tmp_path / "pax.db", admin_token=ADMIN, concurrency=0, allowed_hosts=["testserver"]
    )
    app = create_app(settings, extra_routers=[broken], start_scheduler=False)
    with TestClient(app, raise_server_exceptions=False) as http:
        r = http.get("/broken")
    assert r.status_code == 500 and "secret internals" not in r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_trainers_behind_a_proxy_are_answered_on_the_runner_urls_host(tmp_path):
    """Every post of a trainer behind Caddy or cloudflared got `400 Invalid host header`: the
    host of PAX_SKY_RUNNER_URL was not allowed. It is now, with the bind host's names."""
    from fastapi.testclient import TestClient

    from runner.app import create_app
    from runner.settings import Settings

    settings = Settings(
        db=tmp_path / "pax.db", admin_token=ADMIN, concurrency=0,
        sky_runner_url="https://pax.example.org",
    )  # fmt: skip
    with TestClient(create_app(settings, start_scheduler=False)) as http:
        r = http.get("/healthz", headers={"Host": "pax.example.org"})
        assert r.status_code == 200 and len(r.json()["ledger_id"]) == 32  # names its bucket
        assert http.get("/healthz", headers={"Host": "127.0.0.1"}).status_code == 200
        assert http.get("/healthz", headers={"Host": "evil.example"}).status_code == 400
