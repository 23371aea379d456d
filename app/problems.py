"""The one map from errors to RFC 9457 problem responses; nothing else builds them."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotFoundException,
    ValidationException,
)
from litestar.types import ExceptionHandlersMap

from app.ledger.errors import FieldError, LedgerError

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = logging.getLogger("twofold")

STATUS_BY_CODE: dict[str, int] = {
    "invalid_request": 400,
    "invalid_amount": 400,
    "unbalanced": 400,
    "invalid_query": 400,
    "invalid_idempotency_key": 400,
    "unauthenticated": 401,
    "signature_required": 403,
    "signature_invalid": 403,
    "not_found": 404,
    "account_exists": 409,
    "transaction_exists": 409,
    "invalid_state": 409,
    "expired": 409,
    "idempotency_in_flight": 409,
    "sink_exists": 409,
    "payload_too_large": 413,
    "insufficient_funds": 422,
    "balance_rule_violated": 422,
    "timestamp_out_of_order": 422,
    "idempotency_key_reused": 422,
    "rate_limited": 429,
    "unavailable": 503,
    "idempotency_unavailable": 503,
}

# Problem fields that a failure may carry beside the standard ones.
FAILURE_FIELDS = ("account", "currency", "available", "required")


def problem_body(
    code: str,
    detail: str,
    status: int | None = None,
    errors: tuple[FieldError, ...] = (),
    extra: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    status = status or STATUS_BY_CODE.get(code, 500)
    body: dict[str, Any] = {
        "type": "/problems/" + code.replace("_", "-"),
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "code": code,
        "detail": detail,
    }
    for key in FAILURE_FIELDS:
        if extra and key in extra:
            body[key] = extra[key]
    if errors:
        body["errors"] = [{"path": e.path, "message": e.message} for e in errors]
    return status, body


def problem_response(
    code: str,
    detail: str,
    status: int | None = None,
    errors: tuple[FieldError, ...] = (),
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    status, body = problem_body(code, detail, status, errors, extra)
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _retry_headers(code: str) -> dict[str, str] | None:
    return {"Retry-After": "1"} if STATUS_BY_CODE.get(code) == 503 else None


def ledger_problem(exc: LedgerError) -> tuple[int, bytes, dict[str, str] | None]:
    """Status, body and headers of the problem a ledger error answers."""
    if exc.code in ("unavailable", "idempotency_unavailable"):
        log.warning("answered 503: %s (%r)", exc.detail, exc.__cause__)
    status, body = problem_body(exc.code, exc.detail, errors=exc.errors, extra=exc.extra)
    return status, msgspec.json.encode(body), _retry_headers(exc.code)


def ledger_error(_: Request[Any, Any, Any], exc: LedgerError) -> Response[bytes]:
    status, body, headers = ledger_problem(exc)
    return Response(
        content=body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def _field_path(key: str) -> str:
    path = key.removeprefix("$.").removeprefix("$")
    return path or "body"


def validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    """Litestar's body decoding failed: a malformed body, a wrong type, an unknown field."""
    errors: list[FieldError] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            message = str(item.get("message"))
            if message == "'data'":  # NOTE: Litestar's words for an empty body
                message = "a JSON object is required"
            errors.append(FieldError(_field_path(str(item.get("key") or "")), message))
    detail = "; ".join(f"{e.path}: {e.message}" for e in errors) or str(exc.detail)
    return _bad_body(detail, tuple(errors))


def _bad_body(detail: str, errors: tuple[FieldError, ...] = ()) -> Response[bytes]:
    code = "invalid_request"
    # NOTE: a JSON number out of range can only stand where numbers are allowed: amounts.
    if any(e.path.endswith("amount") for e in errors) or "Number out of range" in detail:
        code = "invalid_amount"
    return problem_response(code, detail, status=400, errors=errors)


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status == 413:
        return problem_response("payload_too_large", "the request body is too large")
    if isinstance(exc, NotFoundException) or status == 404:
        return problem_response("not_found", "no such resource")
    if status == 401:
        return problem_response("unauthenticated", str(exc.detail))
    if status >= 500:
        return problem_response("unavailable", str(exc.detail), status=status)
    if status == 400:
        return _bad_body(str(exc.detail))
    # A 405 keeps the `Allow` header the router put on it.
    return problem_response(
        "invalid_request", str(exc.detail), status=status, headers=dict(exc.headers or {})
    )


def internal_error(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unexpected error", exc_info=exc)
    return problem_response("unavailable", "an unexpected error; retry later", status=500)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LedgerError: ledger_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: internal_error,
}
