"""The write-back sender: outbox rows to Shopify, within the shop's cost bucket (docs/shopify-app.md).

:class:`WriteBackSender` runs in every worker process beside the inbox worker and the job
runner. Each round it

* claims due ``pending`` rows under a lease (``SKIP LOCKED`` on PostgreSQL), at most
  :data:`BATCH` of one shop;
* makes sure the shop's setup is done (metafield definitions for customers and orders, one
  segment per tier), once per install;
* reads what Shopify holds for those resources (one ``nodes`` query: tags and tierline's
  metafields) and writes only the difference (``metafieldsSet``, ``tagsAdd``, ``tagsRemove``, as
  aliased fields of one mutation);
* pays every request from the shop's bucket in the database (:func:`writeback.reserve`), which
  every worker process shares, and takes Shopify's ``throttleStatus`` as the new estimate;
* settles each row: ``sent`` (or ``pending`` again if a newer state was queued meanwhile), a
  retry with back-off, or ``failed`` after :data:`writeback.MAX_ATTEMPTS`.

A worker killed at any instant leaves its rows leased; another claims them when the lease
expires and, reading Shopify first, writes only what is still missing: nothing is lost and
nothing is written twice in effect. No database transaction is open while Shopify is called.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import metrics
from service.background import BackgroundLoop
from service.config import Settings
from service.db import session_scope
from service.domain import writeback
from service.domain.tier_levels import LABELS
from service.domain.writeback import CUSTOMER, NAMESPACE, Claimed, Current
from service.sync import NotInstalledError, ShopAccess, SyncError
from shopify_client import AdminClient, ShopifyError, ShopifyHTTPError

logger = logging.getLogger(__name__)

#: Rows per round (one shop): one read and one mutation with at most 3 fields per row.
BATCH = 25
LEASE_SECONDS = 60.0
#: ``metafieldsSet`` takes at most 25 metafields.
METAFIELDS_PER_SET = 25
#: The requested cost of a mutation field, and of reading one resource (object + tags +
#: tierline's metafields).
MUTATION_COST = 10.0
READ_COST_PER_NODE = 1.0 + len(writeback.CUSTOMER_METAFIELDS)
SEGMENT_NAMES = {tier: f"tierline: {LABELS[tier]}" for tier in writeback.TIERS}

_CUSTOMER_FIELDS = " ".join(
    f'c_{key}: metafield(namespace: "{NAMESPACE}", key: "{key}") {{ value }}'
    for key in writeback.CUSTOMER_METAFIELDS
)
_ORDER_FIELDS = " ".join(
    f'o_{key}: metafield(namespace: "{NAMESPACE}", key: "{key}") {{ value }}'
    for key in writeback.ORDER_METAFIELDS
)
READ_QUERY = f"""
query TierlineWriteBackRead($ids: [ID!]!) {{
  nodes(ids: $ids) {{
    __typename
    ... on Customer {{ id tags {_CUSTOMER_FIELDS} }}
    ... on Order {{ id tags {_ORDER_FIELDS} }}
  }}
}}
"""

DEFINITIONS_QUERY = """
query TierlineDefinitions($ownerType: MetafieldOwnerType!) {
  metafieldDefinitions(first: 20, ownerType: $ownerType, namespace: "$app:tierline") {
    nodes { id namespace key }
  }
}
"""

Hook = Callable[[Sequence[Claimed]], Awaitable[None]]


@dataclass(slots=True)
class RoundReport:
    claimed: int = 0
    sent: int = 0
    unchanged: int = 0
    retried: int = 0
    failed: int = 0
    throttle_waits: int = 0
    requests: list[str] = field(default_factory=list)


class WriteBackSender(BackgroundLoop):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        settings: Settings,
        *,
        write_gate: asyncio.Lock | None = None,
        owner: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
        batch: int = BATCH,
        after_send: Hook | None = None,
    ) -> None:
        super().__init__(sessionmaker, write_gate=write_gate, owner=owner)
        self._http = http
        self._settings = settings
        self._lease = lease_seconds
        self._batch = batch
        self._poll = settings.worker_poll_seconds
        self._after_send = after_send
        self._access: dict[str, ShopAccess] = {}

    async def run(self) -> None:
        logger.info("writeback.started", extra={"owner": self.owner})
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                report = await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("writeback.loop_error")
                await self._sleep(self._poll * 5)
                continue
            if not report.claimed:
                await self._sleep(self._poll)
        logger.info("writeback.stopped", extra={"owner": self.owner})

    async def drain(self, *, max_rounds: int = 100_000) -> RoundReport:
        """Send everything due, round after round (tests, benches, ``tierline worker --drain``)."""
        total = RoundReport()
        for _ in range(max_rounds):
            report = await self.round()
            if not report.claimed:
                break
            for name in ("claimed", "sent", "unchanged", "retried", "failed", "throttle_waits"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            total.requests += report.requests
        return total

    # --- one round ------------------------------------------------------------------------------

    async def round(self) -> RoundReport:
        report = RoundReport()
        async with self._write() as session:
            rows = await writeback.claim(session, self.owner, limit=self._batch, lease_seconds=self._lease)
        if not rows:
            return report
        mine = rows  # one shop per round (claim picks the shop of the most overdue row)
        report.claimed = len(mine)
        try:
            await self._send(mine, report)
        except asyncio.CancelledError:
            raise
        except (NotInstalledError, SyncError, ShopifyError) as exc:
            await self._retry_all(mine, f"{type(exc).__name__}: {exc}", report)
        except Exception as exc:
            logger.exception("writeback.error", extra={"shop": mine[0].shop})
            await self._retry_all(mine, f"{type(exc).__name__}: {exc}", report)
        return report

    async def _send(self, rows: Sequence[Claimed], report: RoundReport) -> None:
        shop = rows[0].shop
        shop_id = rows[0].shop_id
        client = await self._client(shop)
        await self._ensure_setup(client, shop_id, report)
        ids = [writeback.gid(row.kind, row.resource_id) for row in rows]
        data = await self._call(
            client, shop_id, READ_QUERY, {"ids": ids}, 1.0 + READ_COST_PER_NODE * len(ids), report
        )
        nodes = {node["id"]: node for node in data.get("nodes") or [] if isinstance(node, Mapping)}
        plans: dict[int, writeback.Plan] = {}
        gone: list[Claimed] = []
        for row, resource in zip(rows, ids, strict=True):
            node = nodes.get(resource)
            if node is None:
                gone.append(row)
                continue
            plans[row.id] = writeback.plan(row.kind, row.document, _current(row.kind, node))
        mutation, variables, owners = _mutation(rows, plans)
        errors: dict[int, str] = {}
        if mutation:
            answer = await self._call(
                client, shop_id, mutation, variables, MUTATION_COST * len(owners), report
            )
            for alias, row_ids in owners.items():
                payload = answer.get(alias)
                problems = payload.get("userErrors") if isinstance(payload, Mapping) else None
                if payload is None or problems:
                    message = "; ".join(str(p.get("message")) for p in problems or []) or "no answer"
                    for row_id in row_ids:
                        errors[row_id] = f"{alias.rstrip('0123456789')}: {message}"
        if self._after_send is not None:
            await self._after_send(rows)
        async with self._write() as session:
            for row in rows:
                if row in gone:
                    await writeback.mark_failed(
                        session, row, self.owner, f"the {row.kind} no longer exists at Shopify"
                    )
                    report.failed += 1
                    metrics.WRITEBACK_FAILED.labels(row.kind).inc()
                elif row.id in errors:
                    state = await writeback.mark_retry(session, row, self.owner, errors[row.id])
                    if state == "failed":
                        report.failed += 1
                        metrics.WRITEBACK_FAILED.labels(row.kind).inc()
                    else:
                        report.retried += 1
                else:
                    wrote = bool(plans.get(row.id))
                    await writeback.mark_sent(session, row, self.owner, wrote=wrote)
                    if wrote:
                        report.sent += 1
                        metrics.WRITEBACK_SENT.labels(row.kind).inc()
                    else:
                        report.unchanged += 1
                        metrics.WRITEBACK_UNCHANGED.labels(row.kind).inc()

    async def _retry_all(self, rows: Sequence[Claimed], error: str, report: RoundReport) -> None:
        async with self._write() as session:
            for row in rows:
                state = await writeback.mark_retry(session, row, self.owner, error)
                if state == "failed":
                    report.failed += 1
                    metrics.WRITEBACK_FAILED.labels(row.kind).inc()
                else:
                    report.retried += 1
        logger.warning("writeback.retry", extra={"shop": rows[0].shop, "error": error[:200]})

    # --- Shopify --------------------------------------------------------------------------------

    async def _client(self, shop: str) -> AdminClient:
        access = self._access.get(shop)
        if access is None:
            access = self._access[shop] = ShopAccess(
                self._sessionmaker, self._http, self._settings, shop, write_gate=self._gate
            )
        try:
            return await access.client()
        except NotInstalledError:
            self._access.pop(shop, None)
            raise

    async def _call(
        self,
        client: AdminClient,
        shop_id: int,
        query: str,
        variables: Mapping[str, Any],
        cost: float,
        report: RoundReport,
    ) -> dict[str, Any]:
        """One request, paid from the shared bucket first; Shopify's answer corrects the bucket."""
        while True:
            async with self._write() as session:
                wait = await writeback.reserve(session, shop_id, cost)
            if wait <= 0:
                break
            report.throttle_waits += 1
            metrics.WRITEBACK_THROTTLE_WAITS.inc()
            metrics.WRITEBACK_THROTTLE_SECONDS.inc(wait)
            await asyncio.sleep(min(wait, 60.0))
        report.requests.append(query.split("(", 1)[0].split()[-1])
        try:
            data = await client.graphql(query, variables)
        except ShopifyHTTPError as exc:
            if exc.status in (401, 403):
                access = self._access.pop(client.shop, None)
                if access is not None:
                    await access.forget_token(f"the Admin API refused the token (HTTP {exc.status})")
            raise
        finally:
            status = client.last_cost.throttle_status if client.last_cost else None
            if status is not None:
                async with self._write() as session:
                    await writeback.observe(
                        session,
                        shop_id,
                        available=status.currently_available,
                        maximum=status.maximum_available,
                        restore_rate=status.restore_rate,
                    )
        return data

    async def _ensure_setup(self, client: AdminClient, shop_id: int, report: RoundReport) -> None:
        """Metafield definitions (customers and orders) and one segment per tier, once per
        install; each step is safe to repeat (what exists already is left as it is)."""
        async with session_scope(self._sessionmaker, readonly=True) as session:
            done, _next = await writeback.setup_state(session, shop_id)
        if done is not None:
            return
        try:
            setup = await self._setup(client, shop_id, report)
        except ShopifyError as exc:
            async with self._write() as session:
                await writeback.setup_failed(session, shop_id, str(exc))
            raise
        async with self._write() as session:
            await writeback.setup_done(session, shop_id, setup)
        logger.info("writeback.setup_done", extra={"shop": client.shop})

    async def _setup(self, client: AdminClient, shop_id: int, report: RoundReport) -> dict[str, Any]:
        definitions = [
            (owner, key, spec)
            for owner, table in (
                ("CUSTOMER", writeback.CUSTOMER_METAFIELDS),
                ("ORDER", writeback.ORDER_METAFIELDS),
            )
            for key, spec in table.items()
        ]
        fields: list[str] = []
        variables: dict[str, Any] = {}
        declared: list[str] = []
        for n, (owner, key, (kind, name, description)) in enumerate(definitions):
            definition: dict[str, Any] = {
                "namespace": NAMESPACE,
                "key": key,
                "name": name,
                "description": description,
                "ownerType": owner,
                "type": kind,
            }
            if key == "tier" or key == "customer_tier":
                definition["validations"] = [
                    {"name": "choices", "value": json.dumps(list(writeback.TIERS), separators=(",", ":"))}
                ]
            if owner == "CUSTOMER" and key == "tier":
                definition["capabilities"] = {"adminFilterable": {"enabled": True}}
            declared.append(f"$d{n}: MetafieldDefinitionInput!")
            fields.append(
                f"d{n}: metafieldDefinitionCreate(definition: $d{n}) "
                "{ createdDefinition { id namespace key } userErrors { field message code } }"
            )
            variables[f"d{n}"] = definition
        document = f"mutation TierlineDefinitionsCreate({', '.join(declared)}) {{ {' '.join(fields)} }}"
        answer = await self._call(client, shop_id, document, variables, MUTATION_COST * len(fields), report)
        namespace: str | None = None
        for n in range(len(definitions)):
            payload = answer.get(f"d{n}") or {}
            created = payload.get("createdDefinition")
            if isinstance(created, Mapping) and created.get("namespace"):
                namespace = str(created["namespace"])
            for problem in payload.get("userErrors") or []:
                if problem.get("code") != "TAKEN":
                    raise ShopifyError(f"metafieldDefinitionCreate: {problem.get('message')}")
        if namespace is None:  # every definition existed already (a reinstall)
            listed = await self._call(
                client, shop_id, DEFINITIONS_QUERY, {"ownerType": "CUSTOMER"}, 21.0, report
            )
            nodes = (listed.get("metafieldDefinitions") or {}).get("nodes") or []
            namespace = next((str(n["namespace"]) for n in nodes if n.get("namespace")), None)
        if namespace is None:
            raise ShopifyError("the metafield definitions of $app:tierline could not be read back")
        segments: dict[str, str | None] = {}
        fields, declared = [], []
        variables = {}
        for n, tier in enumerate(writeback.TIERS):
            declared += [f"$n{n}: String!", f"$q{n}: String!"]
            fields.append(
                f"s{n}: segmentCreate(name: $n{n}, query: $q{n}) "
                "{ segment { id name } userErrors { field message } }"
            )
            variables[f"n{n}"] = SEGMENT_NAMES[tier]
            variables[f"q{n}"] = f"metafields.{namespace}.tier = '{tier}'"
        document = f"mutation TierlineSegmentsCreate({', '.join(declared)}) {{ {' '.join(fields)} }}"
        answer = await self._call(client, shop_id, document, variables, MUTATION_COST * len(fields), report)
        for n, tier in enumerate(writeback.TIERS):
            payload = answer.get(f"s{n}") or {}
            segment = payload.get("segment")
            problems = payload.get("userErrors") or []
            if isinstance(segment, Mapping):
                segments[tier] = str(segment.get("id"))
            elif problems and all("taken" in str(p.get("message", "")).lower() for p in problems):
                segments[tier] = None  # it exists already (a reinstall)
            else:
                raise ShopifyError(f"segmentCreate: {'; '.join(str(p.get('message')) for p in problems)}")
        return {"namespace": namespace, "segments": segments}

    # --- helpers --------------------------------------------------------------------------------


def _current(kind: str, node: Mapping[str, Any]) -> Current:
    prefix, keys = (
        ("c_", writeback.CUSTOMER_METAFIELDS) if kind == CUSTOMER else ("o_", writeback.ORDER_METAFIELDS)
    )
    values: dict[str, str | None] = {}
    for key in keys:
        field_value = node.get(f"{prefix}{key}")
        values[key] = field_value.get("value") if isinstance(field_value, Mapping) else None
    return Current(frozenset(str(t) for t in node.get("tags") or []), values)


def _mutation(
    rows: Sequence[Claimed], plans: Mapping[int, writeback.Plan]
) -> tuple[str, dict[str, Any], dict[str, list[int]]]:
    """One document of aliased fields: ``metafieldsSet`` in chunks of 25, ``tagsAdd`` and
    ``tagsRemove`` per resource. ``owners``: alias → the rows it writes for."""
    declared: list[str] = []
    fields: list[str] = []
    variables: dict[str, Any] = {}
    owners: dict[str, list[int]] = {}
    metafields: list[tuple[int, dict[str, Any]]] = []
    for row in rows:
        row_plan = plans.get(row.id)
        if not row_plan:
            continue
        resource = writeback.gid(row.kind, row.resource_id)
        for key, value in row_plan.metafields.items():
            metafields.append(
                (
                    row.id,
                    {
                        "ownerId": resource,
                        "namespace": NAMESPACE,
                        "key": key,
                        "value": value,
                        "type": writeback.metafield_type(row.kind, key),
                    },
                )
            )
        for verb, tags in (("tagsAdd", row_plan.add), ("tagsRemove", row_plan.remove)):
            if tags:
                alias = f"{'a' if verb == 'tagsAdd' else 'r'}{len(fields)}"
                declared += [f"${alias}_id: ID!", f"${alias}_tags: [String!]!"]
                fields.append(
                    f"{alias}: {verb}(id: ${alias}_id, tags: ${alias}_tags) "
                    "{ userErrors { field message } }"
                )
                variables[f"{alias}_id"] = resource
                variables[f"{alias}_tags"] = list(tags)
                owners[alias] = [row.id]
    for start in range(0, len(metafields), METAFIELDS_PER_SET):
        chunk = metafields[start : start + METAFIELDS_PER_SET]
        alias = f"m{len(fields)}"
        declared.append(f"${alias}: [MetafieldsSetInput!]!")
        fields.append(
            f"{alias}: metafieldsSet(metafields: ${alias}) {{ userErrors {{ field message code }} }}"
        )
        variables[alias] = [value for _row, value in chunk]
        owners[alias] = sorted({row_id for row_id, _value in chunk})
    if not fields:
        return "", {}, {}
    document = f"mutation TierlineWriteBack({', '.join(declared)}) {{ {' '.join(fields)} }}"
    return document, variables, owners
