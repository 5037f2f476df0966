"""Column types that keep money exact and times in UTC on both SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

#: Money is kept with four decimal places (three-decimal currencies exist) and served with two.
MONEY_SCALE = 4
_SQLITE_FACTOR = Decimal(10) ** MONEY_SCALE
TWO_PLACES = Decimal("0.01")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Money(sa.types.TypeDecorator[Decimal]):
    """``NUMERIC(20,4)`` on PostgreSQL; an integer of ten-thousandths on SQLite.

    SQLite has no decimal type (``NUMERIC`` columns become binary floats), so the embedded
    database stores scaled integers, whose ``SUM`` is exact. Python always sees ``Decimal``.
    """

    impl = sa.Numeric(20, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.BigInteger())
        return dialect.type_descriptor(sa.Numeric(20, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
        if dialect.name == "sqlite":
            return int((amount * _SQLITE_FACTOR).to_integral_value())
        return amount

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        # psycopg reads NUMERIC as Decimal already: nothing to call per value on PostgreSQL.
        if dialect.name == "postgresql":
            return None
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)) / _SQLITE_FACTOR
        return value if isinstance(value, Decimal) else Decimal(str(value))


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in and out; naive values are refused on the way in."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("naive or non-datetime value for a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        # PostgreSQL sessions run in UTC (``service.db``), so psycopg already returns datetimes
        # whose tzinfo is ``datetime.UTC``: nothing to call per value.
        if dialect.name == "postgresql":
            return None
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: JSON everywhere, JSONB on PostgreSQL.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

#: 64-bit surrogate keys that still autoincrement on SQLite (where only INTEGER is a rowid alias).
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
