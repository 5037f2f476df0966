"""Logging: JSON lines in production, readable lines in development; never PII or secrets.

Events are dotted names (``webhook.accepted``) with ids passed in ``extra``. A filter drops any
``extra`` key that could carry personal data or credentials, whatever a caller passes.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

#: ``extra`` keys that may appear on a log line. Anything else is dropped.
ALLOWED_EXTRA = frozenset(
    {
        "webhook_id",
        "topic",
        "shop",
        "status",
        "outcome",
        "error",
        "reason",
        "count",
        "batch",
        "path",
        "method",
        "host",
        "port",
        "database",
        "worker",
        "setting",
        "delivery_id",
        "attempts",
        "duration_ms",
        "env",
        "revision",
        "job",
        "kind",
        "owner",
        "processes",
        "pid",
        "pids",
        "code",
    }
)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and k in ALLOWED_EXTRA}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{ts} {record.levelname:<7} {record.getMessage()}" + (f"  {extras}" if extras else "")
        if record.exc_info and record.exc_info[0] is not None:
            line += f"  exc={record.exc_info[0].__name__}"
        return line


#: Libraries whose debug output carries SQL parameters or payloads: never below WARNING.
QUIET_LIBRARIES = ("sqlalchemy", "aiosqlite", "psycopg", "alembic", "httpx", "httpcore", "uvicorn.access")


def configure_logging(
    *, production: bool, fmt: str = "auto", level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Install one handler (stderr by default) on the root logger (idempotent).

    Libraries that would log SQL parameters or bodies at debug level stay at WARNING, whatever
    ``level`` is, so personal data cannot reach a log line through them.
    """
    use_json = fmt == "json" or (fmt == "auto" and production)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for library in QUIET_LIBRARIES:
        logging.getLogger(library).setLevel(logging.WARNING)
