"""A 405 answer's Allow header names every method its path has. Starlette answers from the first
route that matches the path, so GET /runs and POST /runs, two routes, made OPTIONS /runs say
`Allow: POST` alone. The methods come from the app's own OpenAPI document (what it documents
is what it serves), read once."""

from __future__ import annotations

import re


def method_table(app) -> list[tuple[re.Pattern, str]]:
    """(path pattern, "GET, POST") per documented path."""
    out = []
    for path, item in app.openapi().get("paths", {}).items():
        methods = sorted(m.upper() for m in item if m in ("get", "put", "post", "delete", "patch"))
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
        out.append((pattern, ", ".join(methods)))
    return out


class AllowHeader:
    def __init__(self, app):
        self.app = app
        self.table = None  # built at the first 405: routes are all in by then

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_allow(message):
            if message["type"] == "http.response.start" and message["status"] == 405:
                if self.table is None:
                    self.table = method_table(scope["app"])
                found = next((m for p, m in self.table if p.match(scope["path"])), None)
                if found is not None:
                    kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    message = {**message, "headers": [*kept, (b"allow", found.encode())]}
            await send(message)

        return await self.app(scope, receive, with_allow)
