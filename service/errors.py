"""Application errors and their one mapping onto RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import psycopg
import sqlalchemy as sa

if TYPE_CHECKING:
    # Only the HTTP side renders problems; the worker imports this module for its errors alone
    # and does not pay Litestar's import (docs/benchmarks.md, worker start-up).
    from litestar import Request, Response
    from litestar.exceptions import HTTPException

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
#: A problem lists at most this many field errors, then one that says how many more there were:
#: a body with thousands of bad keys must not get thousands of errors (and its keys) echoed back.
MAX_ERRORS = 20
#: Field names and messages echoed in a problem are cut to this many characters.
MAX_ERROR_TEXT = 200


class AppError(Exception):
    """An error with an HTTP status, rendered as problem+json."""

    status_code: int = 400
    title: str | None = None

    def __init__(
        self,
        detail: str,
        *,
        status_code: int | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code
        self.errors = errors
        self.headers = headers or {}


class BadRequestError(AppError):
    status_code = 400


class UnauthorizedError(AppError):
    status_code = 401


class NotFoundError(AppError):
    status_code = 404


class PayloadTooLargeError(AppError):
    status_code = 413


class UnprocessableError(AppError):
    status_code = 422


class ServiceUnavailableError(AppError):
    status_code = 503


def _cut(text: str) -> str:
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "…"


def bounded_errors(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    """The first :data:`MAX_ERRORS` errors (texts cut short), and a summary of the rest."""
    shown = [{key: _cut(str(value)) for key, value in error.items()} for error in errors[:MAX_ERRORS]]
    hidden = len(errors) - len(shown)
    if hidden > 0:
        shown.append({"field": "", "message": f"{hidden} more errors not shown"})
    return shown


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = bounded_errors(errors)
    from litestar import Response

    return Response(content=body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _app_error_handler(_: Request[Any, Any, Any], exc: AppError) -> Response[dict[str, Any]]:
    return problem(exc.status_code, exc.detail, title=exc.title, errors=exc.errors, headers=exc.headers)


def _validation_errors(extra: Any) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    if isinstance(extra, list):
        for item in extra:
            if isinstance(item, dict):
                key = item.get("key") or item.get("source") or ""
                errors.append({"field": str(key), "message": str(item.get("message", "invalid"))})
    return errors


def _wire_name(request: Request[Any, Any, Any], key: str) -> str:
    """The name a client sent (``customerId``) for a handler parameter Litestar reports by its
    Python name (``customer_id``)."""
    try:
        parameter = request.route_handler.parsed_fn_signature.parameters.get(key)
    except (AttributeError, KeyError):
        return key
    name = getattr(getattr(parameter, "kwarg_definition", None), "name", None)
    return name if isinstance(name, str) and name else key


def _http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    from litestar.exceptions import ValidationException

    status = exc.status_code
    if isinstance(exc, ValidationException):
        found = _validation_errors(exc.extra)
        if {"field": "data", "message": "'data'"} in found:
            # Litestar's words for a JSON body that is required and was empty (no document at all):
            # a malformed request, like a body that is not JSON.
            return problem(400, "the request body is empty: send a JSON document")
        errors = [{**e, "field": _wire_name(request, e["field"])} for e in found]
        # Litestar answers 400 for query, path and body values that fail validation; docs/api.md wants
        # 422 for invalid values and values beyond limits. A malformed request (a body that is
        # not JSON, a malformed cursor) stays 400: those are not ValidationExceptions.
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors if e["field"]))
        return problem(422, f"invalid {fields}" if fields else "Validation failed", errors=errors or None)
    headers = dict(exc.headers or {})
    return problem(status, exc.detail or HTTPStatus(status).phrase, headers=headers or None)


def database_unavailable(exc: BaseException) -> bool:
    """A lost or refused database connection: the client may retry (not a bug, not a 500).

    Through the engine it arrives as SQLAlchemy's error; through the read pool
    (:mod:`service.reads`) as psycopg's own (a connection cut by a restart, none to be had in time:
    ``psycopg_pool.PoolTimeout`` is an ``OperationalError``)."""
    lost = sa.exc.OperationalError | sa.exc.InterfaceError | psycopg.OperationalError | psycopg.InterfaceError
    return isinstance(exc, lost) or (isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated)


def unexpected(exc: Exception, path: str) -> AppError:
    """What an exception no handler expected becomes, logged: ``503`` with ``Retry-After`` for
    a database that is unavailable, else ``500``. The Litestar routes and the plain ASGI paths
    (``service.asgi``) answer both alike."""
    if database_unavailable(exc):
        logger.error("http.database_unavailable", extra={"path": path, "error": type(exc).__name__})
        return ServiceUnavailableError(
            "The database is unavailable; retry later.", headers={"Retry-After": "5"}
        )
    logger.exception("http.unhandled_error", extra={"path": path}, exc_info=exc)
    return AppError("An unexpected error occurred; it has been logged.", status_code=500)


def _unexpected_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    return _app_error_handler(request, unexpected(exc, request.url.path))


def exception_handlers() -> dict[type[Exception] | int, Any]:
    """The one mapping of exceptions onto problem+json responses, for ``Litestar(...)``."""
    from litestar.exceptions import HTTPException

    return {
        AppError: _app_error_handler,
        HTTPException: _http_exception_handler,
        sa.exc.DBAPIError: _unexpected_error_handler,
        psycopg.Error: _unexpected_error_handler,
        Exception: _unexpected_error_handler,
    }
