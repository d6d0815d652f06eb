"""The dashboard's Jinja environment, its number filters and the helpers every page shares
(the engine, query-string ids, the 404 page)."""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Annotated

from fastapi import Path as FastAPIPath
from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
MAX_ID = 2**62  # ids beyond SQLite's integers are refused (422), never looked up
Id = Annotated[int, FastAPIPath(ge=1, le=MAX_ID)]


def _fmt_tokens(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


def _fmt_s(s) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(v, digits=2) -> str:
    """A number for a table; '-' for anything else (a result document may lack a field)."""
    return f"{v:,.{digits}f}" if number(v) else "-"


def _pct(v) -> str:
    return _num(100 * v, 1) if number(v) else "-"


def _mib(v) -> str:
    return _num(v / 2**20, 0) if number(v) else "-"


templates.env.filters.update(
    tokens=_fmt_tokens,
    dur=_fmt_s,
    num=_num,
    pct=_pct,
    mib=_mib,
    when=lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-",
)


def engine_of(request: Request):
    return request.app.state.engine


def an_id(text: str | None) -> bool:
    """A ledger id in a query string: ASCII digits ('²'.isdigit() is true too) within range."""
    return bool(text) and text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_ID


def not_found(request: Request, message: str) -> Response:
    return templates.TemplateResponse(request, "404.html", {"message": message}, status_code=404)


def bad_request(request: Request, message: str) -> Response:
    """A page that says which query field is wrong and how to fix it (422, never a 500)."""
    return templates.TemplateResponse(
        request, "404.html", {"message": message, "title": "Bad request"}, status_code=422
    )


def etag_of(*parts) -> str:
    return '"' + hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest() + '"'


def fresh(request: Request, etag: str) -> Response | None:
    """304 when the page's copy of a fragment is current: live pages poll every few seconds,
    and most polls then cost one small query instead of a render."""
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
    return None
