"""Alembic environment: async engines, batch mode for SQLite, one naming convention."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import service.models  # noqa: F401  (registers every table on the metadata)

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_new_engine() -> None:
    from service.config import Settings
    from service.db import make_engine

    url = context.config.get_main_option("sqlalchemy.url") or ""
    engine = make_engine(Settings(DATABASE_URL=url))
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    _run_offline()
elif (existing := context.config.attributes.get("connection")) is not None:
    _run(existing)
else:
    asyncio.run(_run_with_new_engine())
