"""A real ``tierline serve`` holds bounded memory and closes slow connections (issue 14, item 3).

Before: no limit on header size and no read timeouts, and up to 5 MiB buffered per connection
before the signature check. 8 connections with 40 MB unfinished headers took the server to
515 MB, 80 unfinished 5 MB bodies to 522 MB, and idle or half-sent connections were still open
after 9 minutes (the Fly VM has 512 MB).

These tests attack a ``tierline serve`` process over raw sockets and assert what it holds: its
peak resident memory (``VmHWM`` in ``/proc``, reset before each attack) and the state of every
connection (answered and closed by the server, or still open). Nothing is asserted about time:
sockets wait generously, and a server that never closes a connection fails the test.

By default the sizes are small and the server's limits tightened to match, so the run is short.
``make soak`` sets ``TIERLINE_SOAK_FULL=1``: the attack at full size (8 x 40 MB headers,
80 half-sent 5 MB bodies, 80 idle connections) against the default limits.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.payloads import (
    API_KEY,
    API_SECRET,
    ENCRYPTION_KEY,
    customer_payload,
    next_id,
    signed_webhook,
)

if not Path("/proc/self/status").exists():  # pragma: no cover - Linux only
    pytest.skip("these tests read a process's memory from /proc (Linux)", allow_module_level=True)

TIERLINE = [sys.executable, "-m", "service.cli"]
MB = 1024 * 1024
FULL = os.environ.get("TIERLINE_SOAK_FULL") == "1"
#: Seconds a socket waits for the server: far beyond every limit, so only a server that never
#: answers or never closes reaches it.
PATIENCE = 60.0


@dataclass(frozen=True)
class Attack:
    header_connections: int
    header_bytes: int
    body_connections: int
    body_bytes: int
    idle_connections: int
    server_env: dict[str, str]
    #: The server's budget for bodies in flight, and how many attacking bodies it holds at once.
    budget: int
    budget_slots: int
    #: Largest peak growth of the server's resident memory allowed during one attack.
    growth_limit: int
    #: Largest peak resident memory allowed at all (the Fly VM has 512 MB).
    peak_limit: int


ATTACK = (
    Attack(
        header_connections=8,
        header_bytes=40 * MB,
        body_connections=80,
        body_bytes=5 * MB,
        idle_connections=80,
        server_env={},  # the defaults: 64 KiB heads in 10 s, 64 MiB of bodies, 10 s per body
        budget=64 * MB,
        budget_slots=64 // 5,
        growth_limit=128 * MB,
        peak_limit=256 * MB,
    )
    if FULL
    else Attack(
        header_connections=4,
        header_bytes=8 * MB,
        body_connections=12,
        body_bytes=1 * MB,
        idle_connections=8,
        server_env={
            "TIERLINE_MAX_BODY": str(1 * MB),
            "TIERLINE_BODY_BUDGET": str(4 * MB),
            "TIERLINE_BODY_TIMEOUT": "3",
            "TIERLINE_HEADER_TIMEOUT": "1",
            "TIERLINE_KEEP_ALIVE": "1",
        },
        budget=4 * MB,
        budget_slots=4,
        growth_limit=16 * MB,
        peak_limit=256 * MB,
    )
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    pid: int
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, field: str) -> int:
        """A memory figure of the server process from /proc, in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"{field} not in /proc/{self.pid}/status")

    def reset_peak(self) -> int:
        """Reset the peak resident memory to the current one (Linux 4.0+); the current one."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        return self.status("VmRSS")

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=PATIENCE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        return sock


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module: each attack ends with every connection closed, and the peak
    memory is reset before each one."""
    tmp_path = tmp_path_factory.mktemp("serve")
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'tierline.db'}",
            "SHOPIFY_API_KEY": API_KEY,
            "SHOPIFY_API_SECRET": API_SECRET,
            "TIERLINE_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "TIERLINE_ENV": "development",
            **ATTACK.server_env,
        }
    )
    subprocess.run([*TIERLINE, "migrate"], env=env, cwd=tmp_path, capture_output=True, timeout=60, check=True)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [*TIERLINE, "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(log.read_text()[-2000:]) from None
                time.sleep(0.1)
        yield Server(proc.pid, port, log)
        assert proc.poll() is None, log.read_text()[-2000:]  # it survived the attack
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Outcome:
    """What became of one attacking connection."""

    status: int | None  # the status line the server answered, if it answered
    retry_after: bool
    closed: bool  # the server closed the connection (EOF or reset)


def read_until_closed(sock: socket.socket) -> Outcome:
    """Read what the server sends until it closes the connection (or PATIENCE runs out)."""
    received = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            received += chunk
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    except TimeoutError:
        closed = False
    head = received.split(b"\r\n\r\n", 1)[0].lower()
    status = int(head.split()[1]) if head.startswith(b"http/1.1 ") else None
    return Outcome(status=status, retry_after=b"\r\nretry-after:" in head, closed=closed)


def send_or_closed(sock: socket.socket, data: bytes) -> bool:
    """Send ``data``; False when the server closed the connection meanwhile."""
    try:
        sock.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        return False
    return True


def unfinished_head(server: Server) -> Outcome:
    """A request whose headers never end: one header line of ATTACK.header_bytes, no CRLF."""
    with server.connect() as sock:
        if send_or_closed(sock, b"POST /webhooks/shopify HTTP/1.1\r\nHost: tierline\r\nX-Pad: "):
            chunk = b"a" * (256 * 1024)
            for _ in range(ATTACK.header_bytes // len(chunk)):
                if not send_or_closed(sock, chunk):
                    break
        return read_until_closed(sock)


def half_sent_body(server: Server, path: str = "/webhooks/shopify") -> Outcome:
    """A request that declares ATTACK.body_bytes and sends half of them, then waits."""
    with server.connect() as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: tierline\r\nContent-Type: application/json\r\n"
            f"X-Shopify-Topic: orders/create\r\nX-Shopify-Hmac-Sha256: bm90LWEtc2lnbmF0dXJl\r\n"
            f"Content-Length: {ATTACK.body_bytes}\r\n\r\n"
        ).encode()
        if send_or_closed(sock, head):
            send_or_closed(sock, b"{" + b" " * (ATTACK.body_bytes // 2))
        return read_until_closed(sock)


def idle(server: Server, opening: bytes) -> Outcome:
    """A connection that sends ``opening`` (possibly nothing), then nothing more."""
    with server.connect() as sock:
        if opening:
            send_or_closed(sock, opening)
        return read_until_closed(sock)


def gauge(server: Server, name: str) -> float:
    text = httpx.get(f"{server.base}/metrics", timeout=PATIENCE).text
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(f"{name} "))


def wait_for_gauge(server: Server, name: str, value: float) -> float:
    """Poll /metrics until the gauge reads ``value`` (or PATIENCE runs out); its last reading."""
    deadline = time.monotonic() + PATIENCE
    reading = gauge(server, name)
    while reading != value and time.monotonic() < deadline:
        time.sleep(0.02)
        reading = gauge(server, name)
    return reading


def signed_delivery(server: Server, *, at_least: int = 0) -> httpx.Response:
    """A genuine delivery, its JSON padded with trailing spaces to ``at_least`` bytes."""
    _, body = signed_webhook("customers/create", customer_payload(next_id()))
    body += b" " * max(0, at_least - len(body))
    headers, body = signed_webhook("customers/create", None, raw=body)
    return httpx.post(f"{server.base}/webhooks/shopify", content=body, headers=headers, timeout=PATIENCE)


class TestHeads:
    def test_unfinished_huge_headers_are_refused_and_memory_stays_bounded(self, server: Server) -> None:
        before = server.reset_peak()
        with ThreadPoolExecutor(ATTACK.header_connections) as pool:
            outcomes = list(pool.map(lambda _: unfinished_head(server), range(ATTACK.header_connections)))

        growth = server.status("VmHWM") - before
        assert all(outcome.closed for outcome in outcomes), outcomes
        assert {outcome.status for outcome in outcomes} <= {431, None}  # None: reset mid-send
        sent = ATTACK.header_connections * ATTACK.header_bytes
        assert growth < ATTACK.growth_limit, f"peak grew {growth // MB} MB for {sent // MB} MB of headers"
        assert server.status("VmHWM") < ATTACK.peak_limit
        assert signed_delivery(server).status_code == 200  # and it still takes deliveries

    def test_idle_and_half_sent_heads_are_closed(self, server: Server) -> None:
        openings = [b"", b"GET /health HTTP/1.1\r\nHost: tierline\r\n", b"POST /webhooks/shopify HTT"]
        with ThreadPoolExecutor(ATTACK.idle_connections) as pool:
            outcomes = list(
                pool.map(lambda i: idle(server, openings[i % len(openings)]), range(ATTACK.idle_connections))
            )

        assert all(outcome.closed for outcome in outcomes), outcomes
        assert {outcome.status for outcome in outcomes} <= {408}

    def test_an_idle_kept_alive_connection_is_closed(self, server: Server) -> None:
        with server.connect() as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: tierline\r\n\r\n")
            outcome = read_until_closed(sock)  # the answer, then the close after keep-alive
        assert (outcome.status, outcome.closed) == (200, True)


class TestBodies:
    def test_half_sent_bodies_are_answered_closed_and_bounded(self, server: Server) -> None:
        before = server.reset_peak()
        with ThreadPoolExecutor(ATTACK.body_connections) as pool:
            outcomes = list(pool.map(lambda _: half_sent_body(server), range(ATTACK.body_connections)))

        growth = server.status("VmHWM") - before
        assert all(outcome.closed for outcome in outcomes), outcomes
        statuses = [outcome.status for outcome in outcomes]
        # Never a 200: over the budget 503 at once (retried by Shopify), the rest 408 at the deadline.
        assert set(statuses) <= {408, 503}, statuses
        assert statuses.count(503) >= ATTACK.body_connections - ATTACK.budget_slots
        assert all(outcome.retry_after for outcome in outcomes if outcome.status == 503)
        assert growth < ATTACK.growth_limit, f"peak grew {growth // MB} MB"
        assert server.status("VmHWM") < ATTACK.peak_limit
        assert signed_delivery(server).status_code == 200  # the budget was given back

    def test_a_signed_delivery_over_the_budget_is_503_never_200(self, server: Server) -> None:
        full = ATTACK.budget_slots * ATTACK.body_bytes
        with ThreadPoolExecutor(ATTACK.budget_slots) as pool:
            holders = [pool.submit(half_sent_body, server) for _ in range(ATTACK.budget_slots)]
            held = wait_for_gauge(server, "tierline_http_body_bytes_held", full)
            # Larger than what the holders left of the budget (nothing, unless it is not a multiple).
            busy = signed_delivery(server, at_least=ATTACK.budget - full + 1)
            outcomes = [holder.result() for holder in holders]

        assert held == full
        assert [o.status for o in outcomes] == [408] * len(outcomes)
        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "5"
        assert busy.headers["content-type"].startswith("application/problem+json")
        later = signed_delivery(server)
        assert later.status_code == 200, later.text

    def test_an_api_request_with_an_unread_body_closes_its_connection(self, server: Server) -> None:
        outcome = half_sent_body(server, path=f"/api/stats/customers?x={uuid.uuid4()}")
        assert outcome.closed
        assert outcome.status in (401, 408)
