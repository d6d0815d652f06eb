"""The gate every mutating request passes before any route reads its body.

1) Size: a declared Content-Length over the route's limit is a 413 at once; a chunked body is
   read up to the limit and refused past it (the limits are settings, sized per route: metrics
   batches, results, plans, and a small default).
2) Who is calling, from the Authorization header alone: the admin token for user routes, the
   worker token (or the admin's) for /claim, and for a run's trainer-facing routes (metrics,
   heartbeat, result, exit) that run's own token (or the admin's). A missing, empty or short
   token is a 401, a wrong one a 403, an unknown run a 404. The answer is kept in the request's
   state, where the routes' dependencies read it: one place decides.

So a 57 MB body with a bogus token costs the service a header read, not a parse.
"""

from __future__ import annotations

import json
import re

from runner.auth import ADMIN, MIN_TOKEN, RUN, WORKER, role_of
from runner.ledger.errors import NotFound
from runner.ledger.runs import run_ref

API = "/api/v1"
RUN_ROUTE = re.compile(rf"^{API}/runs/([^/]+)/(metrics|heartbeat|result|exit)$")
READS = {"GET", "HEAD", "OPTIONS"}


async def _send_json(send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app, settings):
        self.app = app
        self.settings = settings

    def limit_for(self, path: str) -> int:
        s = self.settings
        if path.endswith("/metrics"):
            return s.max_metrics_body_bytes
        if path.endswith("/result"):
            return s.max_result_body_bytes
        if path == f"{API}/sweeps":
            return s.max_plan_body_bytes
        return s.max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in READS:
            return await self.app(scope, receive, send)
        path = scope["path"]
        limit = self.limit_for(path)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await _send_json(send, 400, "Content-Length must be a number of bytes")
            if int(declared) > limit:
                return await _send_json(send, 413, _too_big(limit))
        if path.startswith(API):
            refusal = self.authorise(scope, path, headers.get(b"authorization", b""))
            if refusal is not None:
                return await _send_json(send, *refusal)
        if declared is None:  # chunked: read up to the limit, then hand the body on
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > limit:
                    return await _send_json(send, 413, _too_big(limit))
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
            sent = False

            async def replay():
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            return await self.app(scope, replay, send)
        return await self.app(scope, receive, send)

    def authorise(self, scope, path: str, header: bytes) -> tuple | None:
        """None when the caller may go on (its role kept in scope state), else (status,
        detail[, headers]) of the refusal."""
        state = scope["app"].state
        scheme, _, token = header.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return (
                401,
                "missing token: send `Authorization: Bearer <token>` (the admin token is in "
                "<db>.admin_token beside the ledger, or PAX_ADMIN_TOKEN)",
                [(b"www-authenticate", b"Bearer")],
            )
        if len(token) < MIN_TOKEN:
            return 401, f"malformed token: tokens are at least {MIN_TOKEN} characters"
        run_route = RUN_ROUTE.match(path)
        run = None
        if run_route:
            raw = run_route.group(1)
            if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 2**62):
                return 422, f"run id {raw[:30]!r}: must be an integer from 1 to 2^62"
            try:
                run = run_ref(state.engine, run_id=int(raw))
            except NotFound as e:
                return 404, str(e)
        role = role_of(
            token,
            admin_token=state.admin_token,
            worker_token=state.worker_token if path == f"{API}/claim" else None,
            run_token_hash=run.token_hash if run is not None else None,
        )
        # what each route needs: a run's routes its own token, /claim the worker's, the rest
        # the admin's (the admin's opens everything)
        needed = {RUN} if run_route else {WORKER} if path == f"{API}/claim" else set()
        if role != ADMIN and role not in needed:
            if run_route:
                return (
                    403,
                    f"this token may not post to run {raw}: a run token posts to its own run only",
                )
            return 403, "this route needs the admin token"
        caller = {"role": role, "run": run}
        scope.setdefault("state", {})["caller"] = caller
        return None


def _too_big(limit: int) -> str:
    return (
        f"request body over {limit:,} bytes: split it (metrics in smaller batches), or raise "
        "the limit (PAX_MAX_*_BODY_BYTES)"
    )
