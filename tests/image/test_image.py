"""The built image (``make image-test``): lean, non-root, refusing production without secrets,
serving, a separate worker container draining the queue, and stopping on SIGTERM within 10 s."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
import tomllib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.image.containers import BUILDAH, Container, Process, inspect_image, process_uid
from tests.image.helpers import ROOT, SHOP, free_port, skip_module_without_image, wait_for
from tests.support.payloads import customer_payload, next_id, order_payload, signed_webhook

skip_module_without_image()

#: Largest accepted image; the stand-in base is about 150 MB, python:3.11-slim about 130 MB and
#: the virtual environment about 170 MB. A compiler toolchain or the dev tools would break it.
MAX_IMAGE_MB = 360
SECRETS = ("SHOPIFY_API_KEY", "SHOPIFY_API_SECRET", "TIERLINE_ENCRYPTION_KEY")


def requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match is not None, requirement
        names.add(re.sub(r"[-_.]+", "-", match.group(0)).lower())
    return names


def image_megabytes(image: str) -> float:
    size = subprocess.run(
        [*BUILDAH, "images", "--format", "{{.Size}}", image], capture_output=True, text=True, check=True
    ).stdout.split("\n")[0]
    number, unit = size.split()
    return float(number) * {"kB": 1e-3, "MB": 1.0, "GB": 1e3}[unit]


class TestContents:
    def test_runs_as_an_unprivileged_user(self, web: Container, image_config: dict[str, Any]) -> None:
        result = web.run(["sh", "-c", "id -u; id -un; pwd; test -w . && echo writable"])
        uid, user, workdir, writable = result.stdout.split()
        assert (user, workdir, writable) == ("tierline", "/app", "writable")
        assert int(uid) != 0
        assert image_config["User"] == "tierline"

    def test_no_compiler_or_build_tools(self, web: Container) -> None:
        tools = "gcc cc c++ g++ clang ld as make cmake rustc cargo"
        result = web.run(["sh", "-c", f"for t in {tools}; do command -v $t; done; true"])
        assert result.stdout.split() == []

    def test_pip_check_is_clean(self, web: Container) -> None:
        result = web.run(["pip", "check"])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "No broken requirements found." in result.stdout

    def test_runtime_dependencies_only(self, web: Container) -> None:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        result = web.run(["pip", "list", "--format=json"])
        installed = requirement_names([item["name"] for item in json.loads(result.stdout)])
        assert requirement_names(project["dependencies"]) <= installed
        # A dev requirement may be there only as a run-time dependency's dependency (anyio is).
        dev_installed = sorted(requirement_names(project["optional-dependencies"]["dev"]) & installed)
        shown = web.run(["pip", "show", *dev_installed]).stdout if dev_installed else ""
        required_by = re.findall(r"^Required-by:(.*)$", shown, re.MULTILINE)
        assert len(required_by) == len(dev_installed)
        assert [name for name, by in zip(dev_installed, required_by, strict=True) if not by.strip()] == []
        assert {"pytest", "mypy", "ruff", "hypothesis", "selenium"} & installed == set()
        assert {"setuptools", "wheel"} & installed == set()  # build tools left in the build stage

    def test_package_holds_no_tests_docs_or_local_state(self, web: Container) -> None:
        result = web.run(["pip", "show", "--files", "tierline"])
        files = result.stdout.split("Files:", 1)[1].split()
        assert any(f.startswith("service/migrations/versions/") for f in files)
        assert any(f.startswith("service/ui/templates/") for f in files)
        allowed = re.compile(
            r"^(service|webhooks|shopify_client)/|^tierline-[^/]+\.dist-info/|^\.\./\.\./\.\./bin/"
        )
        assert [f for f in files if not allowed.match(f)] == []
        listing = web.run(
            ["sh", "-c", "ls -A /app; ls /opt/tierline/lib/python3.11/site-packages; test -e /src"]
        )
        entries = set(listing.stdout.split())
        assert entries.isdisjoint({"tests", "docs", "bench", ".git", ".venv", ".env", "data", "Makefile"})
        assert listing.returncode != 0  # no /src: the sources stayed in the build stage

    def test_size_and_layers(self, image: str) -> None:
        inspected = inspect_image(image)
        base = inspect_image("docker.io/library/python:3.11-slim")
        assert inspected is not None
        assert base is not None
        layers = inspected["OCIv1"]["rootfs"]["diff_ids"]
        base_layers = base["OCIv1"]["rootfs"]["diff_ids"]
        megabytes = image_megabytes(image)
        assert layers[: len(base_layers)] == base_layers
        assert len(layers) == len(base_layers) + 1
        assert megabytes < MAX_IMAGE_MB


class TestProductionWithoutSecrets:
    @pytest.mark.parametrize("command", ["serve", "worker", "migrate"])
    def test_refuses_to_start_naming_each_secret(
        self, worker_machine: Container, database_url: str, command: str
    ) -> None:
        # Only the database: TIERLINE_ENV=production comes from the image itself.
        result = worker_machine.run(["tierline", command], env={"DATABASE_URL": database_url}, timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "production refuses to start" in result.stderr
        for name in SECRETS:
            assert name in result.stderr

    def test_refuses_a_placeholder_secret(
        self, worker_machine: Container, production_env: dict[str, str]
    ) -> None:
        result = worker_machine.run(
            ["tierline", "worker"], env={**production_env, "SHOPIFY_API_SECRET": "changeme"}
        )
        assert result.returncode == 2
        assert "SHOPIFY_API_SECRET" in result.stderr


class TestServe:
    def test_health_and_ready(self, serve: str) -> None:
        health = httpx.get(f"{serve}/health", timeout=5)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        ready = httpx.get(f"{serve}/ready", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["database"] == "ok"

    def test_a_badly_signed_webhook_is_refused(self, serve: str) -> None:
        headers, body = signed_webhook(
            "customers/create", customer_payload(next_id()), shop=SHOP, secret="wrong"
        )
        response = httpx.post(f"{serve}/webhooks/shopify", content=body, headers=headers, timeout=10)
        assert response.status_code == 401

    def test_the_sqlite_default_works_for_the_unprivileged_user(self, web: Container) -> None:
        # Development inside the image: the default ./data/tierline.db under /app (the user's home).
        result = web.run(["tierline", "migrate"], env={"TIERLINE_ENV": "development"})
        assert result.returncode == 0, result.stdout + result.stderr
        assert "sqlite+aiosqlite:///./data/tierline.db" in result.stdout + result.stderr
        assert web.run(["test", "-s", "/app/data/tierline.db"]).returncode == 0


@pytest.fixture
def worker_process(
    worker_machine: Container, production_env: dict[str, str], migrated: str, fly: dict[str, Any]
) -> Iterator[Process]:
    """fly.toml's `worker` process, in its own container."""
    process = worker_machine.start(shlex.split(fly["processes"]["worker"]), env=production_env)
    yield process
    process.kill()


def backlog(serve: str) -> int:
    return int(httpx.get(f"{serve}/ready", timeout=5).json()["backlog"])


def wait_in_log(process: Process, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.output():
        assert process.popen.poll() is None, process.output()[-3000:]
        assert time.monotonic() < deadline, (
            f"{text!r} not logged within {timeout} s:\n{process.output()[-3000:]}"
        )
        time.sleep(0.1)


class TestWorkerContainer:
    def test_drains_what_the_web_container_accepted(
        self,
        serve: str,
        api_key: str,
        worker_machine: Container,
        production_env: dict[str, str],
        api_secret: str,
        fly: dict[str, Any],
    ) -> None:
        customer_id = next_id()
        deliveries = [
            ("customers/create", customer_payload(customer_id)),
            ("orders/create", order_payload(next_id(), customer_id=customer_id, total="1200.50")),
            ("orders/create", order_payload(next_id(), customer_id=customer_id, total="799.50")),
        ]
        before = backlog(serve)
        for topic, payload in deliveries:
            headers, body = signed_webhook(topic, payload, shop=SHOP, secret=api_secret)
            response = httpx.post(f"{serve}/webhooks/shopify", content=body, headers=headers, timeout=10)
            assert response.status_code == 200, response.text
            assert response.json() == {"status": "accepted"}
        # The web machines leave deliveries to the worker process (fly.toml: TIERLINE_WORKER=off).
        assert backlog(serve) == before + len(deliveries)

        worker = worker_machine.start(shlex.split(fly["processes"]["worker"]), env=production_env)
        try:
            deadline = time.monotonic() + 60
            while backlog(serve) > 0:
                assert worker.popen.poll() is None, worker.output()[-3000:]
                assert time.monotonic() < deadline, worker.output()[-3000:]
                time.sleep(0.2)
            auth = {"Authorization": f"Bearer {api_key}"}
            customer = httpx.get(f"{serve}/api/customers/{customer_id}", headers=auth, timeout=10)
            assert customer.status_code == 200, customer.text
            assert (customer.json()["ltv"], customer.json()["orderCount"]) == ("2000.00", 2)
            processed = httpx.get(f"{serve}/api/deliveries?status=processed", headers=auth, timeout=10).json()
            assert len(processed["items"]) >= len(deliveries)
        finally:
            worker.kill()

    def test_an_idle_worker_stops_on_sigterm_within_10_seconds(self, worker_process: Process) -> None:
        wait_in_log(worker_process, "worker.started")
        assert process_uid(worker_process.main_pid()) != 0
        worker_process.terminate()
        assert worker_process.wait(timeout=10) == 0, worker_process.output()[-3000:]
        assert "worker.stopped" in worker_process.output()


class TestServeShutdown:
    def test_serve_stops_on_sigterm_within_10_seconds(
        self, web: Container, production_env: dict[str, str], migrated: str
    ) -> None:
        port = free_port()
        process = web.start(["tierline", "serve"], env={**production_env, "PORT": str(port)})
        try:
            wait_for(f"http://127.0.0.1:{port}/health", timeout=90, process=process)
            assert process_uid(process.main_pid()) != 0
            process.terminate()
            code = process.wait(timeout=10)
            output = process.output()
            assert "Application shutdown complete" in output, output[-3000:]
            # uvicorn re-raises SIGTERM once shut down (the supervisor sees it); buildah says so.
            assert code == 1, output[-3000:]
            assert "subprocess exited on terminated" in output
        finally:
            process.kill()
