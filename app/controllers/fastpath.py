"""`FastPath`: the hottest routes answered without Litestar's handler pipeline."""

from __future__ import annotations

from collections.abc import Awaitable

import msgspec

from app.controllers.accounts import ACCOUNT_SUFFIXES, balances_at, stored_account
from app.controllers.accounts import PREFIX as ACCOUNTS
from app.controllers.paths import split_rest
from app.controllers.schemas import AccountOut, TransactionIn, account_out, decode_body
from app.controllers.transactions import PREFIX as TRANSACTIONS
from app.controllers.transactions import (
    execute_transaction,
    read_transaction,
    record_transaction,
    signed_body,
)
from app.ledger.documents import Mode
from app.ledger.errors import LedgerError, NotFound
from app.ledger.service import Ledger
from app.middleware import ASGIApp, Receive, Scope, Send, read_body, send_raw
from app.models.store import PostgresStore
from app.problems import PROBLEM_MEDIA_TYPE, ledger_problem

# The requests `FastPath` answers, by method and route template.
CREATE_MODES = {TRANSACTIONS: Mode.PENDING, TRANSACTIONS + "/immediate": Mode.IMMEDIATE}
TRANSACTION_TEMPLATE = TRANSACTIONS + "/{rest}"  # as Litestar writes `/{rest:path}`
ACCOUNT_TEMPLATE = ACCOUNTS + "/{rest}"
_encode_json = msgspec.json.Encoder()


class FastPath:
    """The hottest routes without Litestar's handler pipeline: `POST /v1/transactions`,
    `POST /v1/transactions/immediate`, `PUT /v1/transactions/{id}` (execute),
    `GET /v1/transactions/{id}`, and `GET /v1/accounts/{id}` and `/{id}/balances` with
    plain query strings.

    The innermost middleware: routing, authentication, limits, idempotency and metrics
    have run. It answers what the route handlers would, calling the same functions;
    a query string with anything to decode or any other parameter goes on to the
    handler, which answers it as before. The handlers stay, for those, for
    `PUT /{id}/data` and the journal.

    NOTE: measured under `uniform` (bench/harness.py, alternating runs): the service's
    CPU per transfer 439-462 -> 312-320 us, 2,460-2,620 -> 3,140-3,250 transfers/s;
    Litestar's request and response objects were most of the difference.
    """

    def __init__(self, app: ASGIApp, ledger: Ledger, store: PostgresStore) -> None:
        self.app = app
        self.ledger = ledger
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            work = await self._work(scope, receive)
            if work is None:
                await self.app(scope, receive, send)
                return
            answer, status = await work
        except LedgerError as exc:
            status, problem, headers = ledger_problem(exc)
            await send_raw(send, status, problem, PROBLEM_MEDIA_TYPE, headers)
            return
        await send_raw(send, status, _encode_json.encode(answer), "application/json")

    async def _work(
        self, scope: Scope, receive: Receive
    ) -> Awaitable[tuple[msgspec.Struct, int]] | None:
        """What answers this request here; None for what the route handlers answer."""
        template = scope.get("path_template", "") if scope["type"] == "http" else ""
        method = scope.get("method")
        if method == "POST" and template in CREATE_MODES:
            body, signed = await signed_body(self.store, scope, await read_body(receive))
            data = decode_body(body, TransactionIn)
            tenant, mode = scope["state"]["tenant"], CREATE_MODES[template]
            return record_transaction(self.ledger, tenant, data, mode, signed)
        if method == "PUT" and template == TRANSACTION_TEMPLATE:
            transaction_id = _execute_target(scope)
            if transaction_id is None:
                return None
            tenant = scope["state"]["tenant"]
            return _ok(execute_transaction(self.ledger, tenant, transaction_id))
        if method == "GET" and template == ACCOUNT_TEMPLATE:
            return self._read_account(scope)
        if (method == "GET" and template == TRANSACTION_TEMPLATE
                and not scope.get("query_string") and not _is_proof(scope)):  # fmt: skip
            return _ok(read_transaction(self.ledger, scope))
        return None

    def _read_account(self, scope: Scope) -> Awaitable[tuple[msgspec.Struct, int]] | None:
        """An account, or its balances; None for what the route handler answers."""
        query = _plain_query(scope.get("query_string", b""), ("at", "currency"))
        if query is None:
            return None
        try:
            account_id, suffix = split_rest(scope, ACCOUNTS, ACCOUNT_SUFFIXES)
        except NotFound:
            return None
        tenant = scope["state"]["tenant"]
        if suffix == "balances":
            at, currency = query.get("at"), query.get("currency")
            return _ok(balances_at(self.store, tenant, account_id, at, currency))
        if suffix == "" and not query:
            return _ok(_account(self.store, tenant, account_id))
        return None


async def _ok(work: Awaitable[msgspec.Struct]) -> tuple[msgspec.Struct, int]:
    return await work, 200


async def _account(store: PostgresStore, tenant: str, account_id: str) -> AccountOut:
    return account_out(await stored_account(store, tenant, account_id))


def _plain_query(query: bytes, names: tuple[str, ...]) -> dict[str, str] | None:
    """`names`, each at most once, with nothing to decode (no `%` or `+`); None for any
    other query string, which Litestar parses."""
    if not query:
        return {}
    if b"%" in query or b"+" in query:
        return None
    params: dict[str, str] = {}
    for part in query.decode("latin-1").split("&"):
        name, equals, value = part.partition("=")
        if not equals or name not in names or name in params:
            return None
        params[name] = value
    return params


def _execute_target(scope: Scope) -> str | None:
    """The id `PUT /v1/transactions/{id}` executes; None for `/{id}/data` or a path
    without an id, which the route handler answers."""
    try:
        transaction_id, suffix = split_rest(scope, TRANSACTIONS, ("data",))
    except NotFound:
        return None
    return None if suffix else transaction_id


def _is_proof(scope: Scope) -> bool:
    """`GET /v1/transactions/{id}/proof`, which the route handler answers."""
    try:
        return split_rest(scope, TRANSACTIONS, ("proof",))[1] == "proof"
    except NotFound:
        return False
