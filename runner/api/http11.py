"""The service's HTTP/1.1 server protocol: uvicorn's httptools protocol (the fast parser) with what
a service on an open port needs and uvicorn lacks, since it reads a request's head of any size
and waits for it forever:

- request heads are bounded, in bytes and in header fields: past either, 431 (the bytes are
  counted as they arrive, before the parser is fed more: a 64 MiB header costs the service one
  buffer, not 64 MiB);
- deadlines: a request's head must arrive whole within `head_timeout_s` of its first byte (a
  connection that sends nothing, within that of its opening), its body within `body_timeout_s`
  of its head; past either, 408 and the connection closes. Idle keep-alive connections close
  after uvicorn's own `timeout_keep_alive`;
- its own refusals (400, 408, 431) carry the security headers every other answer has.

`protocol_for(settings)` gives the class `pax serve` runs uvicorn with (`http=`).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from runner.api.headers import HEADERS

REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class HeadTooLarge(Exception):
    """Raised from a parser callback: the parser stops, and the answer is 431."""


class GuardedHttpProtocol(HttpToolsProtocol):
    head_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_headers: int = 100
    max_head_bytes: int = 64 * 1024

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.in_head = True  # bytes now arriving belong to a request's head
        self.head_bytes = 0
        self.fields = 0
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
        if self.in_head:
            if self.deadline is None:
                self._arm(self.head_timeout_s)  # the next request's head starts arriving
            self.head_bytes += len(data)
        super().data_received(data)
        if (
            self.in_head
            and self.head_bytes > self.max_head_bytes
            and not self.transport.is_closing()
        ):
            self._refuse(431, b"request head too large: too many or too long header fields")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head, self.fields = True, 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields += 1
        if self.fields > self.max_headers:
            self.refusal = 431
            raise HeadTooLarge(f"more than {self.max_headers} header fields")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head, self.head_bytes = False, 0
        self._arm(self.body_timeout_s)  # disarmed when the message is whole
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self.in_head = True
        super().on_message_complete()

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
        if self.refusal == 431:
            self._refuse(431, b"request head too large: too many or too long header fields")
        else:
            self._refuse(400, msg.encode("ascii", "replace"))

    def _refuse(self, status: int, body: bytes) -> None:
        self._disarm()
        head = [f"HTTP/1.1 {status} ".encode() + REASONS[status]]
        head += [b"content-type: text/plain; charset=utf-8", b"connection: close"]
        head += [b"content-length: " + str(len(body)).encode()]
        head += [k + b": " + v for k, v in HEADERS]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()


def protocol_for(settings) -> type[GuardedHttpProtocol]:
    """The protocol class with this service's bounds (PAX_HTTP_*)."""
    return type(
        "PaxHttpProtocol",
        (GuardedHttpProtocol,),
        {
            "head_timeout_s": settings.http_head_timeout_s,
            "body_timeout_s": settings.http_body_timeout_s,
            "max_headers": settings.http_max_headers,
            "max_head_bytes": settings.http_max_header_bytes,
        },
    )
