"""A fault-injecting HTTP/1.1 reverse proxy in front of an S3 endpoint, for end-to-end tests.

The proxy listens on 127.0.0.1 (an ephemeral port), forwards each request verbatim (the Host
header included, so SigV4 signatures stay valid) to the upstream S3 server, and answers with the
upstream response re-sent with a Content-Length. A fault plan, replaceable while it runs, decides
per request whether to inject a fault instead:

- ``slowdown``: 503 with an S3 ``SlowDown`` error body, not forwarded;
- ``error500``: 500 with an S3 ``InternalError`` body, not forwarded;
- ``delay``: wait ``seconds`` (cut short by ``close``, then a reset), then forward;
- ``reset_before``: TCP RST on the client connection, not forwarded;
- ``drop_after``: forward (the write happens upstream), then TCP RST instead of the response;
- ``cut_body``: read ``fraction`` of the request body, then TCP RST, not forwarded.

Decisions use one seeded RNG, and what was injected is counted per kind.
"""
from __future__ import annotations

import http.client
import random
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = ("slowdown", "error500", "delay", "reset_before", "drop_after", "cut_body")

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
              "expect", "content-length"}

ERROR_BODIES = {
    "slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "error500": (500, "Internal Server Error", "InternalError",
                 "We encountered an internal error. Please try again."),
}


@dataclass
class Fault:
    """One rule of a plan: `kind` hits the next `count` matching requests (after skipping `skip`
    of them), or each matching request with `probability`. `method` and `path` (a regex searched
    in the request target, query included) restrict which requests match."""
    kind: str
    probability: float = 0.0
    count: int | None = None
    method: str | None = None
    path: str | None = None
    skip: int = 0
    seconds: float = 0.0
    fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {KINDS}")
        self._pattern = re.compile(self.path) if self.path else None

    def matches(self, method: str, target: str) -> bool:
        if self.method and self.method.upper() != method:
            return False
        return self._pattern is None or self._pattern.search(target) is not None


@dataclass
class Event:
    """One injected fault: its kind and the request it hit."""
    kind: str
    method: str
    target: str
    at: float = field(default_factory=time.monotonic)


class FaultProxy:
    """The proxy; a context manager. `url` is its endpoint, `counts` the faults injected per
    kind, `requests` the requests received, `events` each injected fault in order."""

    def __init__(self, upstream_url: str, seed: int = 0, plan: list[Fault] | None = None,
                 upstream_timeout: float = 120.0) -> None:
        parsed = urllib.parse.urlsplit(upstream_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream_url!r}")
        self.upstream = (parsed.hostname, parsed.port or 80)
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._plan: list[tuple[Fault, list[int]]] = []
        self._counts: Counter[str] = Counter()
        self._requests = 0
        self._events: list[Event] = []
        self._closing = threading.Event()
        self.set_plan(plan or [])
        self._server = _Server(("127.0.0.1", 0), _handler_class(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="faultproxy", daemon=True)
        self._thread.start()

    def set_plan(self, plan: list[Fault]) -> None:
        """Replaces the plan; `count` and `skip` start afresh."""
        with self._lock:
            self._plan = [(fault, [fault.skip, fault.count if fault.count is not None else -1]) for fault in plan]

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return {kind: self._counts[kind] for kind in KINDS}

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def decide(self, method: str, target: str) -> Fault | None:
        """The fault to inject into this request, if any (the first rule that fires)."""
        with self._lock:
            self._requests += 1
            for fault, state in self._plan:
                if not fault.matches(method, target):
                    continue
                if state[0] > 0:
                    state[0] -= 1
                    continue
                if fault.count is not None:
                    if state[1] <= 0:
                        continue
                    state[1] -= 1
                elif self._rng.random() >= fault.probability:
                    continue
                self._counts[fault.kind] += 1
                self._events.append(Event(fault.kind, method, target))
                return fault
            return None

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _handler_class(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(_ProxyHandler):
        pass

    Handler.proxy = proxy
    return Handler


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultProxy
    timeout = 300

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def finish(self) -> None:
        try:
            super().finish()
        except (OSError, ValueError):
            pass

    def do_GET(self) -> None:
        self.relay()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def relay(self) -> None:
        fault = self.proxy.decide(self.command, self.path)
        kind = fault.kind if fault else None
        if kind == "reset_before":
            self.reset()
            return
        if kind == "cut_body":
            length = self.body_length()
            self.rfile.read(int(length * fault.fraction) if length else 0)
            self.reset()
            return
        body = self.read_body()
        if kind in ERROR_BODIES:
            self.answer_error(*ERROR_BODIES[kind])
            return
        if kind == "delay" and self.proxy._closing.wait(fault.seconds):
            self.reset()
            return
        try:
            status, reason, headers, payload = self.forward(body)
        except (OSError, http.client.HTTPException) as e:
            self.answer_error(502, "Bad Gateway", "BadGateway", f"faultproxy: upstream failed: {e}")
            return
        if kind == "drop_after":
            self.reset()
            return
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        if self.command == "HEAD" or status in (204, 304) or 100 <= status < 200:
            upstream_length = next((v for n, v in headers if n.lower() == "content-length"), None)
            if upstream_length is not None and self.command == "HEAD":
                self.send_header("Content-Length", upstream_length)
            self.end_headers()
        else:
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        self.wfile.flush()

    def body_length(self) -> int:
        return int(self.headers.get("Content-Length") or 0)

    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.body_length()
        return self.rfile.read(length) if length else b""

    def forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        host, port = self.proxy.upstream
        conn = http.client.HTTPConnection(host, port, timeout=self.proxy.upstream_timeout)
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            if body or self.command in ("PUT", "POST", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            response = conn.getresponse()
            payload = response.read()
            return response.status, response.reason, response.getheaders(), payload
        finally:
            conn.close()

    def answer_error(self, status: int, reason: str, code: str, message: str) -> None:
        payload = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                   f"<Resource>{self.path.split('?')[0]}</Resource><RequestId>faultproxy</RequestId></Error>").encode()
        self.send_response_only(status, reason)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        if status == 503:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def reset(self) -> None:
        """Closes the client connection with a TCP RST (SO_LINGER 0), answering nothing."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()
        except (OSError, ValueError):
            pass
        self.connection.close()
