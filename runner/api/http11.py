"""The service's HTTP/1.1 server protocol: uvicorn's h11 protocol with what a service on an
open port needs and uvicorn lacks (its httptools protocol reads headers without any bound):

- request heads are bounded, in bytes (h11's buffer) and in count: past either, 431;
- deadlines: a request's head must arrive whole within `head_timeout_s` of its first byte (a
  connection that sends nothing at all, within that of its opening), its body within
  `body_timeout_s` of its head; past either, 408 and the connection closes. Idle keep-alive
  connections close after uvicorn's own `timeout_keep_alive`;
- its own refusals (400, 408, 431) carry the security headers every other answer has.

`protocol_for(settings)` gives the class `pax serve` runs uvicorn with (`http=`).
"""

from __future__ import annotations

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from runner.api.headers import HEADERS

REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _Watched:
    """The connection's h11 state machine, watched: a request's head and its end move the
    deadlines, and a refusal's status hint is kept for the answer."""

    def __init__(self, conn: h11.Connection, proto: GuardedH11Protocol):
        self._conn, self._proto = conn, proto

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def next_event(self):
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as e:
            self._proto.refusal = e.error_status_hint
            raise
        if isinstance(event, h11.Request):
            if len(event.headers) > self._proto.max_headers:
                self._proto.refusal = 431
                raise h11.RemoteProtocolError("too many header fields", error_status_hint=431)
            self._proto.head_arrived(body=self._conn.their_state is h11.SEND_BODY)
        elif isinstance(event, h11.EndOfMessage):
            self._proto.body_arrived()
        return event


class GuardedH11Protocol(H11Protocol):
    head_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_headers: int = 100

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.conn = _Watched(self.conn, self)
        self.refusal: int | None = None
        self.deadline = None  # the one pending timer: the head's or the body's

    # ------------------------------------------------------------ deadlines

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm(self.head_timeout_s)  # a connection that says nothing is closed too

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.deadline is None:
            self._arm(self.head_timeout_s)  # the next request's head starts arriving
        super().data_received(data)

    def head_arrived(self, body: bool) -> None:
        if body:
            self._arm(self.body_timeout_s)
        else:
            self._disarm()

    def body_arrived(self) -> None:
        self._disarm()

    def _expired(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app stops waiting for a body that won't come
            self.cycle.message_event.set()
            if self.cycle.response_started:
                self.transport.close()
                return
        self._refuse(408, b"request too slow: its head or body did not arrive in time")

    # ------------------------------------------------------------ refusals

    def send_400_response(self, msg: str) -> None:
        status = self.refusal if self.refusal in REASONS else 400
        if status == 431:
            self._refuse(431, b"request head too large: too many or too long header fields")
        else:
            self._refuse(400, msg.encode("ascii", "replace"))

    def _refuse(self, status: int, body: bytes) -> None:
        """Written as bytes: h11 cannot answer a request whose head never arrived."""
        self._disarm()
        head = [f"HTTP/1.1 {status} ".encode() + REASONS[status]]
        head += [b"content-type: text/plain; charset=utf-8", b"connection: close"]
        head += [b"content-length: " + str(len(body)).encode()]
        head += [k + b": " + v for k, v in HEADERS]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()


def protocol_for(settings) -> type[GuardedH11Protocol]:
    """The protocol class with this service's bounds (PAX_HTTP_*)."""
    return type(
        "PaxH11Protocol",
        (GuardedH11Protocol,),
        {
            "head_timeout_s": settings.http_head_timeout_s,
            "body_timeout_s": settings.http_body_timeout_s,
            "max_headers": settings.http_max_headers,
        },
    )
