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
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import _libpq
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


def children_of(pid: int) -> set[int]:
    """The live child processes of ``pid`` (from /proc)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition: Any, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_several_processes_share_the_port_restart_and_stop_together(postgres_database: str | None) -> None:
    if postgres_database is None:
        pytest.skip("PostgreSQL is not reachable at TEST_DATABASE_URL")
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": postgres_database,
            "SHOPIFY_API_KEY": API_KEY,
            "SHOPIFY_API_SECRET": API_SECRET,
            "TIERLINE_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "TIERLINE_WEB_PROCESSES": "2",
            "TIERLINE_WORKER": "off",
        }
    )
    port = free_port()
    proc = subprocess.Popen(
        [*TIERLINE, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    base = f"http://127.0.0.1:{port}"
    try:
        assert "processes: 2" in proc.stderr.readline()
        assert wait_for(lambda: len(children_of(proc.pid)) == 2)
        first = children_of(proc.pid)

        def post_all(count: int) -> list[tuple[int, str]]:
            answers = []
            for _ in range(count):
                headers, body = signed_webhook("customers/create", customer_payload(next_id()))
                # A new connection each time: the kernel hands each to one of the processes.
                response = httpx.post(f"{base}/webhooks/shopify", content=body, headers=headers, timeout=10)
                answers.append((response.status_code, headers["X-Shopify-Webhook-Id"]))
            return answers

        assert wait_for(lambda: healthy(base))
        answers = post_all(20)
        assert [status for status, _ in answers] == [200] * 20

        victim = min(first)
        os.kill(victim, signal.SIGKILL)  # a process that dies is replaced
        assert wait_for(lambda: len(children_of(proc.pid)) == 2 and victim not in children_of(proc.pid))
        more = post_all(10)
        assert [status for status, _ in more] == [200] * 10

        with psycopg.connect(_libpq(postgres_database)) as conn:
            stored = {
                row[0]
                for row in conn.execute(
                    "SELECT webhook_id FROM webhook_deliveries WHERE webhook_id = ANY(%s)",
                    ([wid for _, wid in answers + more],),
                )
            }
        assert stored == {wid for _, wid in answers + more}  # every 200 was stored

        children = children_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=15)
        assert proc.returncode == 0, rest[-2000:]
        # Each process shuts down gracefully (the replacement may still have been starting).
        assert rest.count("Application shutdown complete") >= 1
        assert "serve.process_exited" in rest  # the killed one, and only it
        assert rest.count("serve.process_exited") == 1
        assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_several_processes_are_refused_on_sqlite(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'tierline.db'}",
            "SHOPIFY_API_KEY": API_KEY,
            "SHOPIFY_API_SECRET": API_SECRET,
            "TIERLINE_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "TIERLINE_WEB_PROCESSES": "2",
        }
    )
    done = subprocess.run(
        [*TIERLINE, "serve", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "TIERLINE_WEB_PROCESSES" in done.stderr
    assert "PostgreSQL" in done.stderr
