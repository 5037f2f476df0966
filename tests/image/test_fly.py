"""fly.toml against the built image (tests/test_deploy_files.py checks it against the code):
the commands it runs exist in the image, the port it routes to is the one the image listens on,
and its check path answers on the running `app` process."""

from __future__ import annotations

import json
import shlex
from typing import Any

import httpx

from tests.image.containers import Container
from tests.image.helpers import Running, skip_module_without_image

skip_module_without_image()


def fly_commands(fly: dict[str, Any]) -> list[str]:
    return [*fly["processes"].values(), fly["deploy"]["release_command"]]


class TestFlyTomlAgainstTheImage:
    def test_every_command_it_runs_exists_in_the_image(self, web: Container, fly: dict[str, Any]) -> None:
        script = " && ".join(f"{command} --help >/dev/null" for command in fly_commands(fly))
        result = web.run(["sh", "-c", script])
        assert result.returncode == 0, result.stdout + result.stderr
        for command in fly_commands(fly):
            assert shlex.split(command)[0] == "tierline"

    def test_internal_port_is_the_port_the_image_listens_on(
        self, fly: dict[str, Any], image_config: dict[str, Any]
    ) -> None:
        port = int(fly["http_service"]["internal_port"])
        env = dict(item.split("=", 1) for item in image_config["Env"])
        assert env["PORT"] == str(port)
        assert env["HOST"] == "0.0.0.0"  # noqa: S104 (reachable from Fly's proxy, not only from loopback)
        assert f"{port}/tcp" in image_config["ExposedPorts"]
        assert env["TIERLINE_ENV"] == "production"

    def test_check_paths_answer_within_their_timeout(self, serve: str, fly: dict[str, Any]) -> None:
        checks = fly["http_service"]["checks"]
        assert checks
        for check in checks:
            timeout = float(str(check["timeout"]).removesuffix("s"))
            response = httpx.request(check["method"], f"{serve}{check['path']}", timeout=timeout)
            assert response.status_code == 200, (check, response.text)

    def test_release_command_migrates(self, migrated: str) -> None:
        assert "database at revision" in migrated

    def test_app_process_binds_all_interfaces_on_the_port_it_is_given(self, app_process: Running) -> None:
        first = json.loads(app_process.process.output().splitlines()[0])
        assert first["event"] == "serve.listening"
        assert (first["host"], first["port"]) == ("0.0.0.0", app_process.port)  # noqa: S104
        assert (first["env"], first["worker"]) == ("production", "off")
