"""``.ci/image.py``, the build behind ``make image``: the parts that need no buildah (these run in
``make test``)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

from tests.image.helpers import ROOT


@pytest.fixture(scope="module")
def build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tierline_image_build", ROOT / ".ci" / "image.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestBaseImage:
    def test_the_dockerfile_base_is_one_the_stand_in_can_replace(self, build: ModuleType) -> None:
        """Moving the Dockerfile to another Python needs a stand-in of that Python (another suite)."""
        bases = build.dockerfile_bases(ROOT / "Dockerfile")
        assert bases == ["python:3.11-slim"]
        assert build.STAND_IN_OK.match(bases[0])
        assert not build.STAND_IN_OK.match("python:3.12-slim")

    def test_stage_names_are_not_bases(self, build: ModuleType, tmp_path: Path) -> None:
        dockerfile = tmp_path / "Dockerfile"
        dockerfile.write_text(
            "FROM python:3.11-slim AS build\nRUN true\nFROM build AS test\nFROM debian:12\n"
        )
        assert build.dockerfile_bases(dockerfile) == ["python:3.11-slim", "debian:12"]

    @pytest.mark.parametrize(
        ("reference", "full"),
        [
            ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
            ("library/python:3.11-slim", "docker.io/library/python:3.11-slim"),
            ("ghcr.io/acme/python:3.11", "ghcr.io/acme/python:3.11"),
            ("localhost/tierline:latest", "localhost/tierline:latest"),
        ],
    )
    def test_qualified_names(self, build: ModuleType, reference: str, full: str) -> None:
        assert build.qualified(reference) == full


class TestDebianMirror:
    def test_one_line_sources_skip_security_and_options(self, build: ModuleType) -> None:
        text = (
            "deb http://security.debian.org/debian-security bookworm-security main\n"
            "# deb http://old.example/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main\n"
        )
        assert build.mirror_from_sources([text]) == "http://mirror.example/debian"

    def test_deb822_sources(self, build: ModuleType) -> None:
        text = (
            "Types: deb\nURIs: http://deb.example/debian-security\nSuites: bookworm-security\n\n"
            "Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\n"
            "Components: main\n"
        )
        assert build.mirror_from_sources(["", text]) == "http://deb.example/debian"

    def test_no_bookworm_source(self, build: ModuleType) -> None:
        assert build.mirror_from_sources(["deb http://deb.example/debian trixie main\n"]) is None


class TestStandInPipSettings:
    def test_keeps_the_network_settings_and_drops_the_machines_disk(
        self, build: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        conf = tmp_path / "pip.conf"
        conf.write_text(
            "[global]\n"
            "cert = /somewhere/bundle.pem\n"
            "find-links = /opt/wheels\n"
            "constraint = /etc/constraints.txt\n"
            "extra-index-url = file:///opt/pypi/simple https://mirror.example/simple\n"
        )
        monkeypatch.setattr(build, "HOST_PIP_FILES", (conf,))
        for name in [n for n in os.environ if n.startswith("PIP_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "90")
        monkeypatch.setenv("PIP_FIND_LINKS", "/opt/more-wheels")

        text = build.stand_in_pip_conf()

        lines = text.splitlines()
        assert lines[1] == "[global]"
        assert set(lines[2:]) == {
            "cert = /etc/ssl/certs/ca-certificates.crt",
            "default-timeout = 90",
            "extra-index-url = https://mirror.example/simple",
        }
