"""The real ``tierline`` command, as a newcomer meets it (docs/operations.md, issue 19).

Every test runs the installed console script (``.venv/bin/tierline``) as a subprocess in an empty
folder, with an environment holding only what the test names: ports, databases that are not
migrated or not supported, API keys, help texts and what the commands print on the way.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from service.app import create_app
from service.config import DEV_SECRETS
from tests.conftest import make_settings
from tests.support.payloads import API_KEY, API_SECRET, ENCRYPTION_KEY, SHOP

TIERLINE = Path(sys.executable).with_name("tierline")
SECRETS = {
    "SHOPIFY_API_KEY": API_KEY,
    "SHOPIFY_API_SECRET": API_SECRET,
    "TIERLINE_ENCRYPTION_KEY": ENCRYPTION_KEY,
}
#: Help texts read from the real command: one of each kind of parameter (flags, integers with
#: ranges, strings, a positional id). ``test_cli.py`` reads every command's help in process.
HELP_COMMANDS = [["serve"], ["simulate"], ["api-key", "revoke"]]
#: An option followed by a type in angle brackets (``--port <int>``, ``--help <bool>``).
TYPE_NOISE = re.compile(r"--[\w-]+ <\w")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(folder: Path, **values: str) -> dict[str, str]:
    """The outer environment without tierline's settings, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIERLINE_", "SHOPIFY_"))}
    for name in ("DATABASE_URL", "HOST", "PORT", "SCOPES"):
        env.pop(name, None)
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{folder / 'data' / 'tierline.db'}"
    env["TIERLINE_LOG_FORMAT"] = "console"
    env.update(values)
    return env


def tierline(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TIERLINE), *args],
        cwd=folder,
        env=env if env is not None else base_env(folder, **SECRETS),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@contextmanager
def serving(folder: Path, env: dict[str, str], *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``tierline serve`` until it answers ``/health``: (process, base URL); stopped after."""
    port = env.get("PORT", "8000")
    process = subprocess.Popen(
        [str(TIERLINE), "serve", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                _, err = process.communicate(timeout=5)
                raise AssertionError(f"serve did not start: {err[-3000:]}")
            time.sleep(0.1)
        yield process, base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def migrated(folder: Path) -> Path:
    done = tierline(folder, "migrate")
    assert done.returncode == 0, done.stderr
    return folder


class TestPorts:
    def test_simulate_sends_to_the_port_of_the_settings(self, migrated: Path) -> None:
        """``PORT=8010 make run`` then ``tierline simulate`` (PORT in the environment, then in
        ``.env``): no --url needed, and nothing is sent to 8000."""
        port = free_port()
        env = base_env(migrated, **SECRETS, PORT=str(port))
        with serving(migrated, env) as (_, base):
            from_environment = tierline(migrated, "simulate", "--customers", "3", "--orders", "5", env=env)
            assert from_environment.returncode == 0, from_environment.stderr
            assert f"to {base}/webhooks/shopify" in from_environment.stderr
            (migrated / ".env").write_text(f"PORT={port}\n")
            without = base_env(migrated, **SECRETS)
            from_dotenv = tierline(
                migrated, "simulate", "--customers", "3", "--orders", "5", "--seed", "2", env=without
            )
            assert from_dotenv.returncode == 0, from_dotenv.stderr
            assert f"to {base}/webhooks/shopify" in from_dotenv.stderr

    def test_busy_port_is_refused_before_announcing(self, migrated: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = tierline(migrated, "serve", "--port", str(port))
        assert done.returncode == 1
        assert "listening on" not in done.stderr
        assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
        assert "Errno" not in done.stderr
        assert "Traceback" not in done.stderr

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("0", "greater than or equal to 1"),
            ("99999", "less than or equal to 65535"),
            ("-5", "greater than"),
        ],
    )
    def test_bad_port_option_is_refused(self, migrated: Path, value: str, message: str) -> None:
        done = tierline(migrated, "serve", "--port", value)
        assert done.returncode == 2
        assert "Invalid value for '--port'" in done.stderr
        assert message in done.stderr
        assert "listening on" not in done.stderr + done.stdout

    @pytest.mark.parametrize("value", ["99999"])
    def test_bad_port_setting_is_refused(self, migrated: Path, value: str) -> None:
        done = tierline(migrated, "serve", env=base_env(migrated, **SECRETS, PORT=value))
        assert done.returncode == 2
        assert lines(done.stderr) == [lines(done.stderr)[-1]]
        assert done.stderr.startswith("tierline: invalid settings: PORT: ")

    def test_serve_announces_the_port_it_listens_on(self, migrated: Path) -> None:
        port = free_port()
        env = base_env(migrated, **SECRETS, PORT=str(port))
        with serving(migrated, env) as (process, base):
            assert httpx.get(f"{base}/health").json() == {"status": "ok"}
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=15)
        assert f"tierline listening on http://127.0.0.1:{port} " in err


class TestDatabaseNotReady:
    @pytest.mark.parametrize(
        "args",
        [["check"], ["api-key", "create", "--shop", SHOP], ["serve"], ["worker", "--drain"]],
    )
    def test_not_migrated_is_one_line_naming_migrate(self, folder: Path, args: list[str]) -> None:
        done = tierline(folder, *args)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert lines(done.stderr) == [
            f"tierline: the database sqlite+aiosqlite:///{folder}/data/tierline.db is not migrated: "
            "run `tierline migrate` first"
        ]

    def test_after_migrate_the_same_command_works(self, folder: Path) -> None:
        assert tierline(folder, "check").returncode == 1
        assert tierline(folder, "migrate").returncode == 0
        done = tierline(folder, "check")
        assert done.returncode == 0, done.stderr

    def test_a_database_at_an_older_revision_is_named(self, migrated: Path) -> None:
        with sqlite3.connect(migrated / "data" / "tierline.db") as conn:
            conn.execute("UPDATE alembic_version SET version_num = '99c48915cffd'")
        done = tierline(migrated, "check")
        assert done.returncode == 1
        assert "is at revision 99c48915cffd, this tierline needs" in done.stderr
        assert "run `tierline migrate`" in done.stderr

    def test_a_database_a_later_release_migrated_is_run_on_with_a_warning(self, migrated: Path) -> None:
        """A rollback: the previous release meets the schema of the next one. Migrations only
        expand (docs/operations.md), so it runs on it; its ``migrate`` (the release command) has
        nothing to do instead of failing the deploy."""
        with sqlite3.connect(migrated / "data" / "tierline.db") as conn:
            conn.execute("UPDATE alembic_version SET version_num = 'f00dfacef00d'")
        done = tierline(migrated, "check")
        assert done.returncode == 0, done.stderr
        assert "is at revision f00dfacef00d, newer than this release's" in done.stderr
        done = tierline(migrated, "migrate")
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert "database at revision f00dfacef00d, newer than this release: nothing to do" in done.stderr
        with sqlite3.connect(migrated / "data" / "tierline.db") as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("f00dfacef00d",)]

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("mysql://user@localhost/shop", "unsupported database 'mysql'"),
            ("not a url", "not a database URL"),
        ],
    )
    def test_unsupported_database_url_is_refused(self, folder: Path, url: str, message: str) -> None:
        done = tierline(folder, "check", env=base_env(folder, **SECRETS, DATABASE_URL=url))
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        (line,) = lines(done.stderr)
        assert line.startswith("tierline: invalid settings: DATABASE_URL: ")
        assert message in line

    def test_unreachable_postgresql_is_one_line(self, folder: Path) -> None:
        url = f"postgresql://tierline@127.0.0.1:{free_port()}/nothing"
        done = tierline(folder, "check", env=base_env(folder, **SECRETS, DATABASE_URL=url))
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        (line,) = lines(done.stderr)
        assert line.startswith("tierline: cannot reach the database postgresql+psycopg://tierline@127.0.0.1:")


class TestOutput:
    @pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c) or "tierline")
    def test_help_has_no_type_noise(self, folder: Path, command: list[str]) -> None:
        done = tierline(folder, *command, "--help")
        assert done.returncode == 0, done.stderr
        assert "Usage: tierline" in done.stdout
        assert "<bool>" not in done.stdout
        assert not TYPE_NOISE.search(done.stdout), done.stdout
        assert "╭" not in done.stdout  # plain text, no boxes

    def test_development_fallbacks_are_announced_once(self, migrated: Path) -> None:
        done = tierline(migrated, "check", env=base_env(migrated))
        assert done.returncode == 0, done.stderr
        warnings = [line for line in lines(done.stderr) if "WARNING" in line]
        assert len(warnings) == 1, done.stderr
        assert "SHOPIFY_API_KEY,SHOPIFY_API_SECRET,TIERLINE_ENCRYPTION_KEY" in warnings[0]

    def test_serve_in_development_warns_once_and_never_about_key_length(self, migrated: Path) -> None:
        """The development pages mint session tokens with the development secret: it is long
        enough for HS256, so PyJWT has nothing to warn about."""
        assert len(DEV_SECRETS["shopify_api_secret"].encode()) >= 32
        port = free_port()
        env = base_env(migrated, PORT=str(port))
        with serving(migrated, env) as (process, base):
            assert httpx.get(f"{base}/app").status_code == 200  # mints a development token
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=15)
        assert "InsecureKeyLengthWarning" not in err
        assert err.count("config.dev_secrets") == 1, err
        assert "Traceback" not in err


class TestApiKeys:
    def test_create_list_use_revoke(self, migrated: Path) -> None:
        created = tierline(migrated, "api-key", "create", "--shop", SHOP)
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1]
        listed = tierline(migrated, "api-key", "list")
        assert listed.returncode == 0, listed.stderr
        header, row = lines(listed.stdout)
        assert header.split() == ["id", "shop", "prefix", "created", "last", "used", "revoked"]
        key_id = row.split()[0]
        assert row.split()[1:3] == [SHOP, f"{key[:10]}…"]
        assert "never" in row
        assert key not in listed.stdout

        settings = make_settings(f"sqlite+aiosqlite:///{migrated / 'data' / 'tierline.db'}")
        with TestClient(create_app(settings, run_worker=False)) as client:
            answer = client.get("/api/customers", headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200, answer.text
        used = lines(tierline(migrated, "api-key", "list", "--shop", SHOP).stdout)[1]
        assert "never" not in used
        assert used.split()[-1] == "-"  # not revoked

        revoked = tierline(migrated, "api-key", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        assert revoked.stdout.strip() == f"revoked API key {key_id} ({key[:10]}…) of {SHOP}"
        with TestClient(create_app(settings, run_worker=False)) as client:
            refused = client.get("/api/customers", headers={"Authorization": f"Bearer {key}"})
            assert refused.status_code == 401
        assert lines(tierline(migrated, "api-key", "list").stdout)[1].split()[-1] == "UTC"

        again = tierline(migrated, "api-key", "revoke", key_id)
        assert again.returncode == 0
        assert "was already revoked" in again.stdout

    def test_revoke_an_unknown_or_malformed_id(self, migrated: Path) -> None:
        unknown = tierline(migrated, "api-key", "revoke", "4242")
        assert unknown.returncode == 1
        assert lines(unknown.stderr) == ["tierline: no API key with id 4242 (see `tierline api-key list`)"]
        for bad in ("abc", "0", "-1"):
            malformed = tierline(migrated, "api-key", "revoke", "--", bad)
            assert malformed.returncode == 2, bad
            assert "Invalid value for 'ID'" in malformed.stderr

    def test_list_of_a_shop_without_keys(self, migrated: Path) -> None:
        done = tierline(migrated, "api-key", "list", "--shop", "nobody.myshopify.com")
        assert done.returncode == 0
        assert done.stdout == ""
        assert "no API keys for nobody.myshopify.com" in done.stderr
        bad = tierline(migrated, "api-key", "list", "--shop", "not a shop")
        assert bad.returncode == 2
        assert "not a shop domain" in bad.stderr
