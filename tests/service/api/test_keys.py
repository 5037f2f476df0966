"""Per-shop API keys on SQLite and PostgreSQL: listed without the key, ``last_used_at`` recorded
after a request (at most once a minute), revoked keys refused at once (docs/operations.md, docs/api.md)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from litestar import Litestar

from service.db import session_scope
from service.domain.api_keys import list_api_keys, record_key_use, revoke_api_key
from service.runtime import Runtime
from service.types import utc_now
from tests.support.api import Client, assert_problem, bearer, new_api_key
from tests.support.deliveries import Sessionmaker
from tests.support.payloads import OTHER_SHOP, SHOP

pytestmark = pytest.mark.anyio


async def keys(sessionmaker: Sessionmaker, shop: str | None = None) -> list[object]:
    async with session_scope(sessionmaker) as session:
        return list(await list_api_keys(session, shop))


class TestList:
    async def test_every_key_of_a_shop_oldest_first_never_the_key(self, sessionmaker: Sessionmaker) -> None:
        first = await new_api_key(sessionmaker)
        second = await new_api_key(sessionmaker)
        await new_api_key(sessionmaker, OTHER_SHOP)
        async with session_scope(sessionmaker) as session:
            listed = await list_api_keys(session, SHOP)
            everyone = await list_api_keys(session)
        assert [k.prefix for k in listed] == [first[:10], second[:10]]
        assert all(k.shop == SHOP and k.last_used_at is None and k.revoked_at is None for k in listed)
        assert {k.shop for k in everyone} == {SHOP, OTHER_SHOP}
        assert all(first not in repr(k) and second not in repr(k) for k in everyone)


class TestLastUsed:
    async def test_a_request_records_when_the_key_was_used(
        self, app: Litestar, client: Client, sessionmaker: Sessionmaker
    ) -> None:
        key = await new_api_key(sessionmaker)
        before = utc_now()

        assert (await client.get("/api/customers", headers=bearer(key))).status_code == 200
        runtime: Runtime = app.state.runtime
        # The write runs on the app's event loop (the test client's thread), beside the request.
        for _ in range(500):
            if not runtime.background:
                break
            await asyncio.sleep(0.01)
        assert not runtime.background

        async with session_scope(sessionmaker) as session:
            (listed,) = await list_api_keys(session, SHOP)
        assert listed.last_used_at is not None
        assert before - timedelta(seconds=1) <= listed.last_used_at <= utc_now()

    async def test_written_at_most_once_a_minute(self, sessionmaker: Sessionmaker) -> None:
        await new_api_key(sessionmaker)
        async with session_scope(sessionmaker) as session:
            (key,) = await list_api_keys(session, SHOP)
            start = utc_now()
            await record_key_use(session, key.id, start)
            await record_key_use(session, key.id, start + timedelta(seconds=30))
            (half_minute,) = await list_api_keys(session, SHOP)
            await record_key_use(session, key.id, start + timedelta(seconds=61))
            (later,) = await list_api_keys(session, SHOP)
        assert half_minute.last_used_at == start
        assert later.last_used_at == start + timedelta(seconds=61)


class TestRevoke:
    async def test_a_revoked_key_is_refused_at_once(self, client: Client, sessionmaker: Sessionmaker) -> None:
        key = await new_api_key(sessionmaker)
        other = await new_api_key(sessionmaker)
        assert (await client.get("/api/settings", headers=bearer(key))).status_code == 200
        async with session_scope(sessionmaker) as session:
            (listed, _) = await list_api_keys(session, SHOP)
            revoked, changed = await revoke_api_key(session, listed.id)
        assert changed
        assert revoked is not None
        assert revoked.revoked_at is not None

        assert_problem(await client.get("/api/settings", headers=bearer(key)), 401)
        assert (await client.get("/api/settings", headers=bearer(other))).status_code == 200

    async def test_twice_or_unknown(self, sessionmaker: Sessionmaker) -> None:
        await new_api_key(sessionmaker)
        async with session_scope(sessionmaker) as session:
            (listed,) = await list_api_keys(session, SHOP)
            await revoke_api_key(session, listed.id)
            again, changed = await revoke_api_key(session, listed.id)
            unknown, unknown_changed = await revoke_api_key(session, listed.id + 1000)
        assert again is not None
        assert not changed
        assert unknown is None
        assert not unknown_changed
