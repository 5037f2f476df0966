"""Fixtures for the built image: run by ``make image-test`` (``TIERLINE_IMAGE`` names the image).

Without ``TIERLINE_IMAGE`` (as in ``make test``) every test here is skipped, saying why. The
containers use the host's PostgreSQL (``TEST_DATABASE_URL``), as Fly machines share one
PostgreSQL: a database of their own is created and dropped. Under ``CI=true`` a missing image,
buildah or PostgreSQL fails instead of skipping.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shlex
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.image.containers import Container, buildah_available, inspect_image, remove_abandoned_containers
from tests.image.helpers import ROOT, SHOP, Running, free_port, wait_for

DEFAULT_PG_URL = "postgresql://127.0.0.1:5432/test"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true" and os.environ.get("TIERLINE_IMAGE"):
        pytest.fail(f"{reason} (CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def fly() -> dict[str, Any]:
    return tomllib.loads((ROOT / "fly.toml").read_text())


@pytest.fixture(scope="session")
def image() -> str:
    name = os.environ.get("TIERLINE_IMAGE")
    if not name:
        pytest.skip("TIERLINE_IMAGE names no image")
    reason = buildah_available()
    if reason:
        _unavailable(reason)
    if inspect_image(name) is None:
        _unavailable(f"image {name} is not in buildah's storage: run `make image`")
    remove_abandoned_containers()
    return name


@pytest.fixture(scope="session")
def image_config(image: str) -> dict[str, Any]:
    inspected = inspect_image(image)
    assert inspected is not None
    config: dict[str, Any] = inspected["OCIv1"]["config"]
    return config


@pytest.fixture(scope="session")
def database_url(image: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the host's server, as the containers reach it."""
    admin = make_url(os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL))
    # The containers run as `tierline`: name the host's role, which libpq would otherwise assume.
    admin = admin.set(username=admin.username or getpass.getuser())
    name = f"tierline_image_{uuid.uuid4().hex[:10]}"
    libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(libpq, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _unavailable(f"PostgreSQL at {admin.render_as_string()} is unreachable: {exc}")
    yield admin.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def api_secret() -> str:
    return secrets.token_hex(16)


@pytest.fixture(scope="session")
def production_env(fly: dict[str, Any], database_url: str, api_secret: str) -> dict[str, str]:
    """fly.toml's [env] and the secrets `fly secrets set` would add (docs/operations.md)."""
    env = {key: str(value) for key, value in fly["env"].items()}
    env.update(
        {
            "DATABASE_URL": database_url,
            "SHOPIFY_API_KEY": "image-smoke-api-key",
            "SHOPIFY_API_SECRET": api_secret,
            "TIERLINE_ENCRYPTION_KEY": secrets.token_urlsafe(48),
            "SHOPIFY_APP_URL": "https://tierline.example",
        }
    )
    return env


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("container-logs")


@pytest.fixture(scope="session")
def web(image: str, logs: Path) -> Iterator[Container]:
    """The `app` machine's container."""
    container = Container(image, "web", logs)
    yield container
    container.remove()


@pytest.fixture(scope="session")
def worker_machine(image: str, logs: Path) -> Iterator[Container]:
    """The `worker` machine's container: a file system of its own."""
    container = Container(image, "worker", logs)
    yield container
    container.remove()


@pytest.fixture(scope="session")
def migrated(web: Container, production_env: dict[str, str], fly: dict[str, Any]) -> str:
    """The release command of fly.toml, run in the image; its output."""
    result = web.run(shlex.split(fly["deploy"]["release_command"]), env=production_env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="session")
def app_process(
    web: Container, production_env: dict[str, str], migrated: str, fly: dict[str, Any]
) -> Iterator[Running]:
    """fly.toml's `app` process running in the web container (on a free port: the host's network)."""
    port = free_port()
    process = web.start(shlex.split(fly["processes"]["app"]), env={**production_env, "PORT": str(port)})
    running = Running(f"http://127.0.0.1:{port}", port, process)
    try:
        wait_for(f"{running.url}/health", timeout=90, process=process)
        yield running
    finally:
        process.kill()


@pytest.fixture
def serve(app_process: Running) -> str:
    """The base URL of the running `app` process."""
    return app_process.url


@pytest.fixture(scope="session")
def api_key(web: Container, production_env: dict[str, str], migrated: str) -> str:
    result = web.run(["tierline", "api-key", "create", "--shop", SHOP], env=production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]
