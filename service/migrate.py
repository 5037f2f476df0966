"""``tierline migrate``: Alembic upgrade to head on either database, safe to run concurrently."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.db import READONLY_OPTION, make_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
#: Serializes concurrent `tierline migrate` runs (several release machines) on PostgreSQL.
ADVISORY_LOCK_ID = 0x7469_6572  # "tier"


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d_%%(slug)s_%%(rev)s")
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _current(connection: Connection) -> str | None:
    """The revision stored in ``alembic_version`` (Alembic keeps one row per head; there is one)."""
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


async def upgrade(settings: Settings, revision: str = "head") -> str | None:
    """Upgrade the database to ``revision`` and return the revision it is at afterwards.

    A database a later release migrated is left as it is (a rollback's release command runs the
    previous release's ``tierline migrate``: there is nothing for it to do)."""
    engine = make_engine(settings)
    try:
        if revision == "head" and (await schema_state(engine)).newer:
            async with engine.connect() as connection:
                return await connection.run_sync(_current)
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, revision)
        async with engine.connect() as connection:
            return await connection.run_sync(_current)
    finally:
        await engine.dispose()


_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


@cache
def _revisions() -> tuple[str, frozenset[str]]:
    """The head revision of this code and every revision it knows.

    Read from the ``revision`` and ``down_revision`` lines of the migration files, without
    importing Alembic: the long-running commands check the schema at start-up, and Alembic's
    import is a third of ``tierline worker``'s start-up (docs/benchmarks.md). The result is the
    one Alembic's ``ScriptDirectory`` gives (tests/service/test_migrations.py).
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        values = dict(_ASSIGNMENT.findall(path.read_text(encoding="utf-8")))
        revision = ast.literal_eval(values["revision"])
        down = ast.literal_eval(values.get("down_revision", "None"))
        revisions.add(revision)
        parents.update([down] if isinstance(down, str) else (down or ()))
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads ({sorted(heads)}): expected one")
    return heads.pop(), frozenset(revisions)


def head_revision() -> str:
    return _revisions()[0]


def _stored_revision(connection: Connection) -> str | None:
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return _current(connection)


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database's schema stands against this code's migrations."""

    current: str | None
    head: str
    known: bool

    @property
    def newer(self) -> bool:
        """Migrated by a later release: a revision this code does not know."""
        return self.current is not None and not self.known

    @property
    def ready(self) -> bool:
        """At this code's head, or newer: migrations only expand a schema the release before them
        still runs on (docs/operations.md), so a rollback runs on a newer schema."""
        return self.current == self.head or self.newer

    def problem(self, database: str) -> str | None:
        """One line for an operator, or None when this code can run on the schema."""
        if self.ready:
            return None
        if self.current is None:
            return f"the database {database} is not migrated: run `tierline migrate` first"
        return (
            f"the database {database} is at revision {self.current}, this tierline needs "
            f"{self.head}: run `tierline migrate`"
        )

    def note(self, database: str) -> str | None:
        """A line worth a warning even though the code can run: a schema of a later release."""
        if not self.newer:
            return None
        return (
            f"the database {database} is at revision {self.current}, newer than this release's "
            f"{self.head} (a later release migrated it); running on it"
        )


async def schema_state(engine: AsyncEngine) -> SchemaState:
    """Read the stored revision (raises SQLAlchemy's errors when the database cannot be reached)."""
    async with engine.connect() as connection:
        await connection.execution_options(**{READONLY_OPTION: True})
        current = await connection.run_sync(_stored_revision)
    head, known = _revisions()
    return SchemaState(current=current, head=head, known=current in known)
