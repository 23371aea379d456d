"""`/v1/transactions`: create (pending or immediate), read, execute, void/reverse, data."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import State

from app.controllers.accounts import (
    ACCOUNT_SUFFIXES,
    balances_at,
    decode_data,
    search_page,
    stored_account,
)
from app.controllers.accounts import PREFIX as ACCOUNTS
from app.controllers.paths import split_rest, tenant_of
from app.controllers.schemas import (
    BATCH_TRANSACTIONS_MAX,
    AccountOut,
    BatchIn,
    BatchOut,
    TransactionIn,
    TransactionOut,
    TransactionsOut,
    account_out,
    batch_out,
    transaction_out,
    utc_now,
)
from app.ledger.batch import BatchFailed
from app.ledger.documents import Draft, Mode
from app.ledger.errors import InvalidRequest, LedgerError, NotFound, TransactionFailed
from app.ledger.search import Target
from app.ledger.service import Ledger
from app.metrics import count_transactions
from app.middleware import ASGIApp, Receive, Scope, Send, read_body, replaying, send_raw
from app.models.search import search_transactions
from app.models.store import PostgresStore
from app.problems import PROBLEM_MEDIA_TYPE, ledger_problem

PREFIX = "/v1/transactions"
# `/{id}` routes, and the fixed routes whose names are valid ids too: without them a
# transaction named `batch` could be created but never read, executed or cancelled.
BY_ID = ["/{rest:path}", "/immediate", "/batch", "/_search"]


async def _search(request: Request[Any, Any, State], store: PostgresStore) -> TransactionsOut:
    page = await search_page(request, Target.TRANSACTIONS)
    found, cursor = await search_transactions(store, tenant_of(request), page)
    return TransactionsOut(items=[transaction_out(t) for t in found], next=cursor)


async def record_transaction(
    ledger: Ledger, tenant: str, data: TransactionIn, mode: Mode
) -> tuple[TransactionOut, int]:
    """Record a transaction: the answer, 201 when created or 200 for a repeated id."""
    draft = data.draft(mode, utc_now())
    try:
        transaction, created = await ledger.create(tenant, draft)
    except TransactionFailed:
        count_transactions("FAILED")
        raise
    count_transactions(transaction.status.value)
    return transaction_out(transaction), 201 if created else 200


async def read_transaction(ledger: Ledger, scope: Mapping[str, Any]) -> TransactionOut:
    transaction_id, _ = split_rest(scope, PREFIX, ())
    return transaction_out(await ledger.transaction(scope["state"]["tenant"], transaction_id))


async def execute_transaction(ledger: Ledger, tenant: str, transaction_id: str) -> TransactionOut:
    transaction = await ledger.execute(tenant, transaction_id)
    count_transactions(transaction.status.value)
    return transaction_out(transaction)


class TransactionController(Controller):
    path = PREFIX

    @get("/")
    async def search(
        self, request: Request[Any, Any, State], store: PostgresStore
    ) -> TransactionsOut:
        """Search transactions: oldest first by timestamp, then id."""
        return await _search(request, store)

    @post("/_search", status_code=200)
    async def search_by_post(
        self, request: Request[Any, Any, State], store: PostgresStore
    ) -> TransactionsOut:
        """The same search, for clients that cannot send a GET body."""
        return await _search(request, store)

    async def _create(
        self, request: Request[Any, Any, State], data: TransactionIn, ledger: Ledger, mode: Mode
    ) -> Response[TransactionOut]:
        answer, status = await record_transaction(ledger, tenant_of(request), data, mode)
        return Response(answer, status_code=status)

    @post("/", status_code=201)
    async def create(
        self, request: Request[Any, Any, State], data: TransactionIn, ledger: Ledger
    ) -> Response[TransactionOut]:
        """Create a PENDING transaction: its out-lines are held."""
        return await self._create(request, data, ledger, Mode.PENDING)

    @post("/immediate", status_code=201)
    async def immediate(
        self, request: Request[Any, Any, State], data: TransactionIn, ledger: Ledger
    ) -> Response[TransactionOut]:
        """Create and complete in one call."""
        return await self._create(request, data, ledger, Mode.IMMEDIATE)

    @post("/batch", status_code=200)
    async def batch(
        self, request: Request[Any, Any, State], data: BatchIn, ledger: Ledger
    ) -> BatchOut:
        """Up to 8,190 transactions in one group commit; `atomic`: all or nothing."""
        if not data.transactions or len(data.transactions) > BATCH_TRANSACTIONS_MAX:
            raise InvalidRequest(f"transactions: 1 to {BATCH_TRANSACTIONS_MAX} items")
        mode, now = Mode(data.mode), utc_now()
        drafts: list[Draft | LedgerError] = []
        for i, item in enumerate(data.transactions):
            try:
                drafts.append(item.draft(mode, now))
            except LedgerError as error:
                error.detail = f"transactions[{i}]: {error.detail}"
                drafts.append(error)
        valid = [d for d in drafts if isinstance(d, Draft)]
        if data.atomic and len(valid) < len(drafts):
            # An invalid item fails an atomic batch before anything is recorded.
            first = next(i for i, d in enumerate(drafts) if not isinstance(d, Draft))
            drafts = [d if i == first else BatchFailed() for i, d in enumerate(drafts)]
            valid = []
        results = await ledger.create_many(tenant_of(request), valid, data.atomic) if valid else []
        answer = batch_out(data.transactions, drafts, results)
        count_transactions(*(item.status for item in answer.results))
        return answer

    @get(BY_ID)
    async def read(self, request: Request[Any, Any, State], ledger: Ledger) -> TransactionOut:
        return await read_transaction(ledger, request.scope)

    @put(BY_ID)
    async def execute_or_replace_data(
        self, request: Request[Any, Any, State], ledger: Ledger
    ) -> TransactionOut:
        """`PUT /{id}` executes a PENDING transaction; `PUT /{id}/data` replaces its data."""
        tenant = tenant_of(request)
        transaction_id, suffix = split_rest(request.scope, PREFIX, ("data",))
        if suffix == "data":
            body = decode_data(await request.body())
            return transaction_out(
                await ledger.replace_transaction_data(tenant, transaction_id, body.data)
            )
        return await execute_transaction(ledger, tenant, transaction_id)

    @delete(BY_ID, status_code=200)
    async def cancel(self, request: Request[Any, Any, State], ledger: Ledger) -> TransactionOut:
        """Void a PENDING transaction or reverse a COMPLETED one."""
        transaction_id, suffix = split_rest(request.scope, PREFIX, ())
        if suffix:
            raise NotFound("no such resource")
        transaction = await ledger.cancel(tenant_of(request), transaction_id)
        count_transactions(transaction.status.value)
        return transaction_out(transaction)


# The requests `FastPath` answers, by method and route template.
CREATE_MODES = {PREFIX: Mode.PENDING, PREFIX + "/immediate": Mode.IMMEDIATE}
EXECUTE_TEMPLATE = PREFIX + "/{rest}"  # as Litestar writes `/{rest:path}`
ACCOUNT_TEMPLATE = ACCOUNTS + "/{rest}"
_decode_json = msgspec.json.Decoder()
_encode_json = msgspec.json.Encoder()


class FastPath:
    """The hottest routes without Litestar's handler pipeline: `POST /v1/transactions`,
    `POST /v1/transactions/immediate`, `PUT /v1/transactions/{id}` (execute),
    `GET /v1/transactions/{id}`, and `GET /v1/accounts/{id}` and `/{id}/balances` with
    plain query strings.

    The innermost middleware: routing, authentication, limits, idempotency and metrics
    have run. It answers what the route handlers would, calling the same functions;
    a create body that does not decode into `TransactionIn` (as Litestar decodes it:
    JSON, then a lax conversion), or a query string with anything to decode or any other
    parameter, goes on to the handler, which answers it as before. The handlers stay,
    for those, for `PUT /{id}/data`, the journal and the OpenAPI schema.

    NOTE: measured under `uniform` (bench/harness.py, alternating runs): the service's
    CPU per transfer 439-462 -> 312-320 us, 2,460-2,620 -> 3,140-3,250 transfers/s;
    Litestar's request and response objects were most of the difference.
    """

    def __init__(self, app: ASGIApp, ledger: Ledger, store: PostgresStore) -> None:
        self.app = app
        self.ledger = ledger
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        template = scope.get("path_template", "") if scope["type"] == "http" else ""
        method = scope.get("method")
        work: Awaitable[tuple[msgspec.Struct, int]] | None = None
        if method == "POST" and template in CREATE_MODES:
            body = await read_body(receive)
            try:
                data = msgspec.convert(_decode_json.decode(body), TransactionIn, strict=False)
            except (msgspec.DecodeError, msgspec.ValidationError):
                await self.app(scope, replaying(body), send)
                return
            tenant, mode = scope["state"]["tenant"], CREATE_MODES[template]
            work = record_transaction(self.ledger, tenant, data, mode)
        elif method == "PUT" and template == EXECUTE_TEMPLATE and not _data_suffix(scope):
            work = self._execute(scope)
        elif method == "GET" and template == ACCOUNT_TEMPLATE:
            work = self._read_account(scope)
        elif method == "GET" and template == EXECUTE_TEMPLATE and not scope.get("query_string"):
            work = _ok(read_transaction(self.ledger, scope))
        if work is None:
            await self.app(scope, receive, send)
            return
        try:
            answer, status = await work
        except LedgerError as exc:
            status, problem, headers = ledger_problem(exc)
            await send_raw(send, status, problem, PROBLEM_MEDIA_TYPE, headers)
            return
        await send_raw(send, status, _encode_json.encode(answer), "application/json")

    async def _execute(self, scope: Scope) -> tuple[TransactionOut, int]:
        transaction_id, _ = split_rest(scope, PREFIX, ())
        answer = await execute_transaction(self.ledger, scope["state"]["tenant"], transaction_id)
        return answer, 200

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


def _data_suffix(scope: Scope) -> bool:
    """`PUT /v1/transactions/{id}/data` (or a path without an id): the route handler's."""
    try:
        return split_rest(scope, PREFIX, ("data",))[1] == "data"
    except NotFound:
        return True
