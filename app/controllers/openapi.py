"""The OpenAPI 3.1 document: one path per real route, with its problems, served at
`/schema`, and Swagger UI and ReDoc from assets the service itself serves.

NOTE: built here rather than by Litestar, because ids may hold `/`: the handlers take
the rest of the path (`/{rest:path}`) and tell `/balances`, `/entries` and `/data`
apart themselves, which Litestar could only describe as one `{rest}` path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from litestar import Controller, Response, get

from app.controllers.openapi_schemas import (
    CURRENCY_PATTERN,
    EXTRA_SCHEMAS,
    ID_PATTERN,
    PROBLEM,
    REFINED,
    SEARCH,
)
from app.controllers.schemas import (
    AccountIn,
    AccountOut,
    AccountsOut,
    BalancesAtOut,
    BatchIn,
    BatchOut,
    DataIn,
    EntriesOut,
    KeysIn,
    ProofOut,
    TransactionIn,
    TransactionOut,
    TransactionsOut,
)
from app.controllers.sinks import SinkIn, SinkOut, SinksOut
from app.ledger.records import EVENT_TYPES
from app.problems import STATUS_BY_CODE

VENDOR = Path(__file__).resolve().parent.parent / "static" / "vendor"
SWAGGER = "swagger-ui-5.35.0"
REDOC = "redoc-2.5.4"
ASSETS = "/schema/assets"

# Problems every operation of a kind may answer, beside its own.
ANY_V1 = ("unauthenticated", "rate_limited", "unavailable")
WRITES = (
    "invalid_request", "invalid_idempotency_key", "idempotency_in_flight",
    "idempotency_key_reused", "payload_too_large", "idempotency_unavailable",
)  # fmt: skip
FAILURES = ("insufficient_funds", "balance_rule_violated", "timestamp_out_of_order")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    ok: tuple[int, str]  # status and response schema
    body: str | dict[str, Any] | None = None
    query: Sequence[tuple[str, dict[str, Any]]] = ()
    problems: Sequence[str] = ()
    write: bool = False
    media: str = "application/json"


TEXT = {"type": "string"}
LIMIT = ("limit", {"type": "integer", "minimum": 1, "maximum": 1000})
AFTER = ("after", TEXT)
CURRENCY = ("currency", {"type": "string", "pattern": CURRENCY_PATTERN})
TRANSACTION_SHORTCUTS = (
    ("account", {"type": "string", "pattern": ID_PATTERN}),
    (
        "status",
        {"type": "string", "enum": ["PENDING", "COMPLETED", "FAILED", "VOIDED", "REVERSED"]},
    ),
    CURRENCY,
    ("from", {"type": "string", "format": "date-time"}),
    ("to", {"type": "string", "format": "date-time"}),
    LIMIT,
    AFTER,
)
SIGNATURES = ("signature_required", "signature_invalid")
CREATE_PROBLEMS = ("invalid_amount", "unbalanced", "transaction_exists", *FAILURES, *SIGNATURES)

OPERATIONS = (
    Operation("get", "/v1/accounts", "Search accounts (every account, by id)", (200, "AccountsOut"),
              query=(LIMIT, AFTER), problems=("invalid_query",)),
    Operation("post", "/v1/accounts", "Create an account", (201, "AccountOut"), "AccountIn",
              problems=("account_exists",), write=True),
    Operation("post", "/v1/accounts/_search", "Search accounts with the query language",
              (200, "AccountsOut"), SEARCH, problems=("invalid_query",)),
    Operation("get", "/v1/accounts/{id}", "An account with its current balances",
              (200, "AccountOut"), problems=("invalid_request", "not_found")),
    Operation("put", "/v1/accounts/{id}", "Replace an account's data", (200, "AccountOut"),
              "DataIn", problems=("not_found",), write=True),
    Operation("put", "/v1/accounts/{id}/keys",
              "Replace an account's keys (signed by a current key when it has any)",
              (200, "AccountOut"), "KeysIn", problems=("not_found", *SIGNATURES), write=True),
    Operation("get", "/v1/accounts/{id}/balances", "Balances as they stood at an instant",
              (200, "BalancesAtOut"),
              query=(("at", {"type": "string", "format": "date-time"}), CURRENCY),
              problems=("invalid_request", "not_found")),
    Operation("get", "/v1/accounts/{id}/entries", "The account's journal, oldest first",
              (200, "EntriesOut"), query=(CURRENCY, LIMIT, AFTER),
              problems=("invalid_request", "not_found")),
    Operation("get", "/v1/transactions", "Search transactions (query-string shortcuts)",
              (200, "TransactionsOut"), query=TRANSACTION_SHORTCUTS, problems=("invalid_query",)),
    Operation("post", "/v1/transactions", "Create a PENDING transaction (holds its out-lines)",
              (201, "TransactionOut"), "TransactionIn", problems=CREATE_PROBLEMS, write=True),
    Operation("post", "/v1/transactions/immediate", "Create and complete a transaction",
              (201, "TransactionOut"), "TransactionIn", problems=CREATE_PROBLEMS, write=True),
    Operation("post", "/v1/transactions/batch", "Up to 8,190 transactions in one call",
              (200, "BatchOut"), "BatchIn",
              problems=("invalid_amount", "unbalanced", *SIGNATURES), write=True),
    Operation("post", "/v1/transactions/_search", "Search transactions with the query language",
              (200, "TransactionsOut"), SEARCH, problems=("invalid_query",)),
    Operation("get", "/v1/transactions/{id}", "A transaction with its state history",
              (200, "TransactionOut"), problems=("invalid_request", "not_found")),
    Operation("put", "/v1/transactions/{id}", "Execute a PENDING transaction",
              (200, "TransactionOut"), problems=("not_found", "invalid_state", "expired"),
              write=True),
    Operation("delete", "/v1/transactions/{id}", "Void a PENDING or reverse a COMPLETED one",
              (200, "TransactionOut"),
              problems=("not_found", "invalid_state", "transaction_exists", *FAILURES,
                        *SIGNATURES),
              write=True),
    Operation("get", "/v1/transactions/{id}/proof",
              "The signed request a transaction was recorded from, as received",
              (200, "ProofOut"), problems=("invalid_request", "not_found")),
    Operation("put", "/v1/transactions/{id}/data", "Replace a transaction's data",
              (200, "TransactionOut"), "DataIn", problems=("not_found",), write=True),
    Operation("get", "/v1/events", "The tenant's log, oldest first", (200, "EventsOut"),
              query=(("after", {"type": "integer", "minimum": 0}), LIMIT,
                     ("type", {"enum": list(EVENT_TYPES)})),
              problems=("invalid_request",)),
    Operation("get", "/v1/events/head", "The newest event: keep it to detect a rewrite",
              (200, "LogHead")),
    Operation("get", "/v1/events/stream", "The log as it grows (Server-Sent Events)",
              (200, "EventStream"), query=(("after", {"type": "integer", "minimum": 0}),),
              problems=("invalid_request",), media="text/event-stream"),
    Operation("post", "/v1/verify", "Re-check the tenant's ledger from its stored rows",
              (200, "VerifyOut")),
    Operation("get", "/v1/sinks", "The tenant's sinks", (200, "SinksOut")),
    Operation("post", "/v1/sinks", "Send the log to a webhook, Redis, NATS or RabbitMQ",
              (201, "SinkOut"), "SinkIn", problems=("sink_exists",)),
    Operation("get", "/v1/sinks/{id}", "A sink and how far it got", (200, "SinkOut"),
              problems=("invalid_request", "not_found")),
    Operation("delete", "/v1/sinks/{id}", "Stop and remove a sink", (200, "SinkOut"),
              problems=("invalid_request", "not_found")),
)  # fmt: skip


def allowed_methods() -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """Each documented path as a pattern of raw request paths (an id's own slashes come
    encoded as `%2F`), with the methods it answers: `Allow` for a sub-resource such as
    `/v1/accounts/{id}/balances` names its own methods, not its parent's."""
    methods: dict[str, set[str]] = {}
    for operation in OPERATIONS:
        methods.setdefault(operation.path, set()).add(operation.method.upper())
    return [
        (re.compile(re.escape(path).replace(re.escape("{id}"), "[^/]+") + "/?"),
         frozenset(found | {"OPTIONS"}))
        for path, found in methods.items()
    ]  # fmt: skip


STRUCTS = (AccountIn, AccountOut, AccountsOut, BalancesAtOut, BatchIn, BatchOut, DataIn,
           EntriesOut, KeysIn, ProofOut, TransactionIn, TransactionOut, TransactionsOut,
           SinkIn, SinkOut, SinksOut)  # fmt: skip


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _components() -> dict[str, Any]:
    _, schemas = msgspec.json.schema_components(STRUCTS, ref_template="#/components/schemas/{name}")
    for (struct, name), schema in REFINED.items():
        schemas[struct]["properties"][name] = schema
    schemas["Problem"] = PROBLEM
    schemas.update(EXTRA_SCHEMAS)
    return dict(sorted(schemas.items()))


def _responses(operation: Operation) -> dict[str, Any]:
    status, schema = operation.ok
    responses: dict[str, Any] = {
        str(status): {
            "description": "OK",
            "content": {operation.media: {"schema": _ref(schema)}},
        }
    }
    codes = [*operation.problems, *ANY_V1, *(WRITES if operation.write else ())]
    if operation.body is not None:
        codes.append("invalid_request")
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(STATUS_BY_CODE[code], []).append(code)
    if status == 201:
        # The same id (or account) with the same body again answers the stored one.
        responses["200"] = responses["201"]
    for problem_status, problem_codes in sorted(by_status.items()):
        responses[str(problem_status)] = {
            "description": ", ".join(f"`{c}`" for c in problem_codes),
            "content": {
                "application/problem+json": {
                    "schema": {
                        "allOf": [_ref("Problem")],
                        "properties": {"code": {"enum": problem_codes}},
                    }
                }
            },
        }
        if problem_status in (429, 503):
            responses[str(problem_status)]["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}
            }
    return responses


def _operation(operation: Operation) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    if "{id}" in operation.path:
        parameters.append({
            "name": "id", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": ID_PATTERN},
            "description": "An id holding `/` is sent with its slashes encoded as `%2F`.",
        })  # fmt: skip
    for name, schema in operation.query:
        parameters.append({"name": name, "in": "query", "required": False, "schema": schema})
    if operation.write:
        parameters.append({
            "name": "Idempotency-Key", "in": "header", "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                       "pattern": "^[\\x20-\\x7e]+$"},
            "description": "Replays the stored answer of a retried write for 24 hours.",
        })  # fmt: skip
    spec: dict[str, Any] = {
        "summary": operation.summary,
        "operationId": f"{operation.method}{operation.path}".replace("/", "_").replace(
            "{id}", "by_id"
        ),
        "tags": [operation.path.split("/")[2]],
        "parameters": parameters,
        "responses": _responses(operation),
    }
    if operation.body is not None:
        schema = _ref(operation.body) if isinstance(operation.body, str) else operation.body
        spec["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    return spec


SERVICE_PATHS = {
    "/health": {"get": {"summary": "Liveness", "security": [], "responses": {
        "200": {"description": "the process runs", "content": {"application/json": {
            "schema": {"type": "object", "properties": {"status": {"const": "ok"}}}}}}}}},
    "/ready": {"get": {"summary": "Readiness: the database and Redis answer", "security": [],
                       "responses": {
        "200": {"description": "ready", "content": {"application/json": {
            "schema": {"type": "object", "properties": {"status": {"const": "ok"}}}}}},
        "503": {"description": "`unavailable`: names what does not answer",
                "content": {"application/problem+json": {"schema": _ref("Problem")}}}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {
        "200": {"description": "Prometheus text", "content": {"text/plain": {
            "schema": {"type": "string"}}}}}}},
}  # fmt: skip


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Twofold",
            "version": "0.1.0",
            "description": "A double-entry ledger service. Errors are RFC 9457 problems"
            " whose `code` a client branches on.",
        },
        "servers": [{"url": "/"}],
        "security": [{"basic": []}, {"bearer": []}],
        "paths": {**paths, **SERVICE_PATHS},
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "the tenant's public key and secret",
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`<public-key>:<secret>`",
                },
            },
        },
    }


SWAGGER_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Twofold API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{ASSETS}/{SWAGGER}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{ASSETS}/{SWAGGER}/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "/schema/openapi.json", dom_id: "#swagger-ui"}});</script>
</body></html>"""

REDOC_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Twofold API</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><redoc spec-url="/schema/openapi.json"></redoc>
<script src="{ASSETS}/{REDOC}/redoc.standalone.js"></script></body></html>"""


class SchemaController(Controller):
    """`/schema`: the document as JSON; Swagger UI and ReDoc with local assets."""

    path = "/schema"
    include_in_schema = False

    def __init__(self, owner: Any) -> None:
        super().__init__(owner)
        self.body = msgspec.json.encode(document())

    @get(["/", "/openapi.json"], media_type="application/json")
    async def openapi(self) -> Response[bytes]:
        return Response(self.body, media_type="application/json")

    @get("/swagger", media_type="text/html")
    async def swagger(self) -> str:
        return SWAGGER_PAGE

    @get("/redoc", media_type="text/html")
    async def redoc(self) -> str:
        return REDOC_PAGE
