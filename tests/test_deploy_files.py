"""fly.toml, the Dockerfile and the CLI agree: what can be checked without building the image.
tests/image/ builds on this with the image itself (``make image-test``)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import typer.main

from service.app import create_app
from service.cli import app as cli_app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fly() -> dict[str, object]:
    return tomllib.loads((ROOT / "fly.toml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def cli_commands() -> set[str]:
    group = typer.main.get_group(cli_app)
    return set(group.commands)


def assert_is_tierline_command(command: str) -> None:
    words = shlex.split(command)
    assert words[0] == "tierline", command
    assert words[1] in cli_commands(), command


class TestFlyToml:
    def test_processes_and_release_command_are_tierline_commands(self, fly: dict[str, object]) -> None:
        processes = fly["processes"]
        assert isinstance(processes, dict)
        assert set(processes) == {"app", "worker"}
        for command in processes.values():
            assert_is_tierline_command(command)
        deploy = fly["deploy"]
        assert isinstance(deploy, dict)
        assert deploy["release_command"] == "tierline migrate"

    def test_http_service_port_and_check_match_the_app(self, fly: dict[str, object], dockerfile: str) -> None:
        service = fly["http_service"]
        env = fly["env"]
        assert isinstance(service, dict)
        assert isinstance(env, dict)
        port = int(service["internal_port"])
        assert int(env["PORT"]) == port
        assert f"EXPOSE {port}" in dockerfile
        assert re.search(rf"PORT={port}\b", dockerfile)
        paths = {check["path"] for check in service["checks"]}
        assert paths == {"/health"}
        routes = {route.path for route in create_app().routes}
        assert paths <= routes
        assert service["processes"] == ["app"]

    def test_web_machines_leave_deliveries_to_the_worker_process(self, fly: dict[str, object]) -> None:
        env = fly["env"]
        assert isinstance(env, dict)
        assert env["TIERLINE_WORKER"] == "off"
        assert env["TIERLINE_ENV"] == "production"


class TestDockerfile:
    def test_multi_stage_non_root_without_dev_dependencies(self, dockerfile: str) -> None:
        stages = re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\w+))?", dockerfile, re.MULTILINE)
        assert len(stages) >= 2
        assert re.search(r"^USER\s+(?!root)\w+", dockerfile, re.MULTILINE)
        # The run-time dependencies from pyproject.toml, then the package itself without extras.
        assert 'p["project"]["dependencies"]' in dockerfile
        assert re.search(r"pip install --no-deps --no-build-isolation \.\s", dockerfile)
        assert "[dev]" not in dockerfile
        assert "optional-dependencies" not in dockerfile

    def test_default_command_is_tierline_serve(self, dockerfile: str) -> None:
        match = re.search(r"^CMD\s+(\[.*\])", dockerfile, re.MULTILINE)
        assert match is not None
        command = " ".join(tomllib.loads(f"c = {match.group(1)}")["c"])
        assert command == "tierline serve"
        assert_is_tierline_command(command)

    def test_dockerignore_admits_only_what_the_dockerfile_copies(self, dockerfile: str) -> None:
        patterns = [
            line.strip()
            for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert patterns[0] == "*"  # an allow-list: .git, .venv, data, tests, docs, .env stay out
        admitted = {p[1:] for p in patterns if p.startswith("!")}
        copied: set[str] = set()
        for match in re.finditer(r"^COPY\s+(?!--from)(.+)$", dockerfile, re.MULTILINE):
            copied.update(match.group(1).split()[:-1])
        assert admitted == copied
        for local_state in ("**/*.db", "**/.env", "**/__pycache__"):
            assert local_state in patterns
