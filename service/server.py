"""How ``tierline serve`` runs the application: uvicorn with httptools, and limits on request heads.

uvicorn bounds neither the size of a request head nor how long a client may take to send it: a
connection that sends nothing, or headers that never end, was held (and buffered) for ever.
:class:`GuardedHttpToolsProtocol` adds both, before any of the application runs:

* a head (request line and headers) larger than ``TIERLINE_MAX_HEADER_BYTES`` is answered ``431``
  and the connection closed, holding at most that much plus one read;
* a head not complete within ``TIERLINE_HEADER_TIMEOUT`` seconds of the connection (or of the
  first byte of the next request on a kept-alive connection) is answered ``408`` and closed;
* an idle kept-alive connection is closed after ``TIERLINE_KEEP_ALIVE`` seconds (uvicorn).

Bodies are bounded by the application itself (:mod:`service.limits`). Forwarded headers
(``X-Forwarded-For``, ``X-Forwarded-Proto``) are trusted only from ``FORWARDED_ALLOW_IPS``
(loopback by default).

With ``TIERLINE_WEB_PROCESSES`` above 1, :func:`run_processes` forks that many server processes
that accept connections on the one listening socket (the kernel hands each connection to one of
them), restarts one that dies, and passes ``SIGTERM``/``SIGINT`` on to all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.config import Settings
from service.metrics import REQUESTS_REFUSED

logger = logging.getLogger(__name__)

#: A process that dies is started again after this long (a crash loop costs one fork a second).
RESTART_DELAY_SECONDS = 1.0


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size limit and a deadline on each request head."""

    max_head_bytes: ClassVar[int] = 64 * 1024
    head_timeout: ClassVar[float] = 10.0

    _in_head: bool = True
    _head_bytes: int = 0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = True
        self._head_bytes = 0
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        counting = self._in_head
        if counting:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still in the head after this read: every byte counted so far belongs to it.
        if counting and self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse(431, "head_too_large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm_head_timer()  # the first byte of a request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(408, "head_timeout")

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` (when no response is under way on this connection) and close it."""
        if self.transport.is_closing():
            return
        REQUESTS_REFUSED.labels(reason=reason).inc()
        self._cancel_head_timer()
        if self.cycle is None or self.cycle.response_complete:
            phrase = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, phrase, len(phrase), phrase)
            )
        self.transport.close()


def guarded_protocol(settings: Settings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class with this process's limits."""
    limits: dict[str, Any] = {
        "max_head_bytes": settings.max_header_bytes,
        "head_timeout": settings.header_timeout_seconds,
    }
    return type("TierlineHttpProtocol", (GuardedHttpToolsProtocol,), limits)


def server_config(app: Any, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration ``tierline serve`` runs ``app`` with."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(settings),
        ws="none",
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_graceful_shutdown=8,
        server_header=False,
    )


def _serve_child(serve_one: Callable[[], None]) -> int:
    """In a forked process: default signal dispositions (uvicorn installs its own), then serve."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        serve_one()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        logger.exception("serve.process_failed")
        return 1
    return 0


def run_processes(serve_one: Callable[[], None], count: int) -> int:
    """Run ``serve_one`` (one uvicorn server on the inherited listening socket) in ``count``
    forked processes until ``SIGTERM`` or ``SIGINT``, which is passed on to each; a process that
    exits otherwise is started again. Returns 0 when all stopped after the signal.

    Call it before any event loop or thread exists in this process (``fork`` copies only the
    calling thread).
    """
    children: dict[int, int] = {}
    stopping = False

    def start(slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child; its coverage is the served requests)
            code = _serve_child(serve_one)
            logging.shutdown()
            os._exit(code)
        children[pid] = slot

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in range(count):
            start(slot)
        logger.info("serve.processes", extra={"count": count, "pids": sorted(children)})
        worst = 0
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            slot_of = children.pop(pid, None)
            if slot_of is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if stopping:
                # uvicorn re-raises the signal after a graceful shutdown: that is a clean exit.
                if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                    worst = max(worst, abs(code))
                continue
            logger.error("serve.process_exited", extra={"pid": pid, "code": code})
            time.sleep(RESTART_DELAY_SECONDS)
            if not stopping:
                start(slot_of)
        return worst
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
