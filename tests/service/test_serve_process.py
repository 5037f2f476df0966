"""``tierline serve`` as a process: it says where it listens and on which database, answers, and
on SIGTERM finishes an in-flight request, stops its worker and exits within 10 seconds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.payloads import (
    API_KEY,
    API_SECRET,
    ENCRYPTION_KEY,
    customer_payload,
    next_id,
    signed_webhook,
)

TIERLINE = [sys.executable, "-m", "service.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_body_in_flight(base: str) -> bool:
    """Poll /metrics until a request body is being read (``tierline_http_body_bytes_held`` > 0)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
            if line.startswith("tierline_http_body_bytes_held ") and float(line.split()[1]) > 0:
                return True
        time.sleep(0.02)
    return False


def test_serve_starts_answers_and_stops_gracefully(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'tierline.db'}",
            "SHOPIFY_API_KEY": API_KEY,
            "SHOPIFY_API_SECRET": API_SECRET,
            "TIERLINE_ENCRYPTION_KEY": ENCRYPTION_KEY,
        }
    )
    subprocess.run([*TIERLINE, "migrate"], env=env, cwd=tmp_path, capture_output=True, timeout=60, check=True)
    port = free_port()
    proc = subprocess.Popen(
        [*TIERLINE, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    base = f"http://127.0.0.1:{port}"
    try:
        banner = proc.stderr.readline()
        assert f"listening on http://127.0.0.1:{port}" in banner
        assert "database: sqlite+aiosqlite:///" in banner
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        headers, body = signed_webhook("customers/create", customer_payload(next_id()))
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            # A request in flight: its head and half its body sent, and the server reading it (its
            # body holds bytes of the body budget) when SIGTERM arrives.
            sock.sendall(
                f"POST /webhooks/shopify HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[: len(body) // 2]
            )
            assert wait_for_body_in_flight(base)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            sock.sendall(body[len(body) // 2 :])
            answer = sock.recv(65536)
        _, rest = proc.communicate(timeout=12)
        # uvicorn re-raises the signal once shutdown is complete, so supervisors see it.
        assert proc.returncode in (0, -signal.SIGTERM), rest[-2000:]
        assert "Application shutdown complete" in rest
        assert time.monotonic() - started < 10
        assert answer.startswith(b"HTTP/1.1 200 ")  # the request in flight was answered, not dropped
        assert "worker.stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
