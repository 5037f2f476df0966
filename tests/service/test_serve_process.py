"""``tierline serve`` as a process: it says where it listens and on which database, answers, and
on SIGTERM finishes an in-flight request, stops its worker and exits within 10 seconds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.factories import API_KEY, API_SECRET, ENCRYPTION_KEY, customer_payload, next_id, signed_webhook

TIERLINE = [sys.executable, "-m", "service.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        answers: list[int] = []
        # A client built and connected beforehand: the request below leaves at once (building an
        # httpx client and connecting could take longer than the pause on a loaded machine, and
        # the request would then arrive after SIGTERM, when the server no longer accepts).
        client = httpx.Client(base_url=base, timeout=10)
        assert client.get("/health").status_code == 200

        def post() -> None:
            answers.append(client.post("/webhooks/shopify", content=body, headers=headers).status_code)

        sender = threading.Thread(target=post)
        sender.start()
        time.sleep(0.05)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        sender.join(timeout=10)
        _, rest = proc.communicate(timeout=12)
        # uvicorn re-raises the signal once shutdown is complete, so supervisors see it.
        assert proc.returncode in (0, -signal.SIGTERM), rest[-2000:]
        assert "Application shutdown complete" in rest
        assert time.monotonic() - started < 10
        client.close()
        assert answers == [200]  # the request in flight was answered, not dropped
        assert "worker.stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
