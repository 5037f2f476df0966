"""Helpers shared by the image tests."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.image.containers import Process

ROOT = Path(__file__).resolve().parents[2]
SHOP = "image-smoke.myshopify.com"


def skip_module_without_image() -> None:
    """One skip line per module in `make test`, where no image is named."""
    if not os.environ.get("TIERLINE_IMAGE"):
        pytest.skip(
            "the image tests run with `make image-test`, which builds the image and sets TIERLINE_IMAGE",
            allow_module_level=True,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float, process: Process | None = None) -> httpx.Response:
    """GET ``url`` until it answers 200 (or the process exits)."""
    deadline = time.monotonic() + timeout
    last: str = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.popen.poll() is not None:
            break
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    output = process.output()[-3000:] if process is not None else ""
    raise AssertionError(f"{url} did not answer 200 within {timeout} s ({last})\n{output}")


@dataclass(frozen=True)
class Running:
    url: str
    port: int
    process: Process
