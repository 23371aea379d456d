"""`/v1/transactions`: create (pending or immediate), read, execute, void/reverse, data."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import State

from app.controllers.accounts import search_page
from app.controllers.fastpath import FAST, Answer
from app.controllers.paths import split_rest, tenant_of
from app.controllers.schemas import (
    BATCH_TRANSACTIONS_MAX,
    BatchIn,
    BatchOut,
    DataIn,
    ProofOut,
    TransactionIn,
    TransactionOut,
    TransactionsOut,
    batch_out,
    decode_body,
    proof_out,
    transaction_out,
    utc_now,
)
from app.controllers.signatures import authority
from app.ledger.documents import Draft, Mode
from app.ledger.errors import (
    BatchFailed,
    InvalidRequest,
    LedgerError,
    NotFound,
    SignatureInvalid,
    SignatureRequired,
    TransactionFailed,
)
from app.ledger.keys import Authority
from app.ledger.search import Target
from app.ledger.service import Ledger
from app.metrics import count_transactions
from app.middleware.asgi import Receive, Scope, read_body
from app.models.keys import read_proof
from app.models.search import search_transactions
from app.models.store import PostgresStore

PREFIX = "/v1/transactions"
SIGNED_IDS = "a signed request names its transaction ids, so that a replay is the same one"
# `/{id}` routes, and the fixed routes whose names are valid ids too: without them a
# transaction named `batch` could be created but never read, executed or cancelled.
BY_ID = ["/{rest:path}", "/immediate", "/batch", "/_search"]
SIGNATURE_ERRORS = (SignatureRequired, SignatureInvalid)


async def _search(request: Request[Any, Any, State], store: PostgresStore) -> TransactionsOut:
    page = await search_page(request, Target.TRANSACTIONS, store.settings.json_depth_max)
    found, cursor = await search_transactions(store, tenant_of(request), page)
    return TransactionsOut(items=[transaction_out(t) for t in found], next=cursor)


async def record_transaction(
    ledger: Ledger, tenant: str, data: TransactionIn, mode: Mode, signed: Authority
) -> tuple[TransactionOut, int]:
    """Record a transaction: the answer, 201 when created or 200 for a repeated id."""
    if signed.signed and data.id is None:
        raise InvalidRequest.at("id", SIGNED_IDS)
    draft = data.draft(mode, utc_now(), ledger.limits)
    try:
        transaction, created = await ledger.create(tenant, draft, signed)
    except TransactionFailed:
        count_transactions("FAILED")
        raise
    count_transactions(transaction.status.value)
    return transaction_out(transaction), 201 if created else 200


async def read_transaction(ledger: Ledger, tenant: str, transaction_id: str) -> TransactionOut:
    return transaction_out(await ledger.transaction(tenant, transaction_id))


async def execute_transaction(ledger: Ledger, tenant: str, transaction_id: str) -> TransactionOut:
    transaction = await ledger.execute(tenant, transaction_id)
    count_transactions(transaction.status.value)
    return transaction_out(transaction)


# What `FastPath` answers without the handlers' pipeline (see app/controllers/fastpath.py).


def _fast_create(mode: Mode) -> Answer:
    async def answer(
        ledger: Ledger, store: PostgresStore, scope: Scope, receive: Receive
    ) -> tuple[TransactionOut, int]:
        body = await read_body(receive)
        signed = await authority(store, scope, body)
        data = decode_body(body, TransactionIn)
        return await record_transaction(ledger, scope["state"]["tenant"], data, mode, signed)

    return answer


async def _fast_read(
    ledger: Ledger, _: PostgresStore, scope: Scope, __: Receive
) -> tuple[TransactionOut, int] | None:
    """A transaction; its `/proof`, or anything with a query string, the handler."""
    if scope.get("query_string"):
        return None
    transaction_id, suffix = split_rest(scope, PREFIX, ("proof",))
    if suffix:
        return None
    return await read_transaction(ledger, scope["state"]["tenant"], transaction_id), 200


async def _fast_execute(
    ledger: Ledger, _: PostgresStore, scope: Scope, __: Receive
) -> tuple[TransactionOut, int] | None:
    """`PUT /{id}`; `/{id}/data` and a path without an id, the handler."""
    try:
        transaction_id, suffix = split_rest(scope, PREFIX, ("data",))
    except NotFound:
        return None
    if suffix:
        return None
    return await execute_transaction(ledger, scope["state"]["tenant"], transaction_id), 200


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
        self, request: Request[Any, Any, State], ledger: Ledger, store: PostgresStore, mode: Mode
    ) -> Response[TransactionOut]:
        body = await request.body()
        signed = await authority(store, request.scope, body)
        data = decode_body(body, TransactionIn)
        answer, status = await record_transaction(ledger, tenant_of(request), data, mode, signed)
        return Response(answer, status_code=status)

    @post("/", status_code=201, opt={FAST: _fast_create(Mode.PENDING)})
    async def create(
        self, request: Request[Any, Any, State], ledger: Ledger, store: PostgresStore
    ) -> Response[TransactionOut]:
        """Create a PENDING transaction: its out-lines are held."""
        return await self._create(request, ledger, store, Mode.PENDING)

    @post("/immediate", status_code=201, opt={FAST: _fast_create(Mode.IMMEDIATE)})
    async def immediate(
        self, request: Request[Any, Any, State], ledger: Ledger, store: PostgresStore
    ) -> Response[TransactionOut]:
        """Create and complete in one call."""
        return await self._create(request, ledger, store, Mode.IMMEDIATE)

    @post("/batch", status_code=200)
    async def batch(
        self, request: Request[Any, Any, State], ledger: Ledger, store: PostgresStore
    ) -> BatchOut:
        """Up to 8,190 transactions in one group commit; `atomic`: all or nothing. A
        signed batch is one body: refused whole when it misses an owner's signature."""
        body = await request.body()
        signed = await authority(store, request.scope, body)
        data = decode_body(body, BatchIn)
        if not data.transactions or len(data.transactions) > BATCH_TRANSACTIONS_MAX:
            raise InvalidRequest(f"transactions: 1 to {BATCH_TRANSACTIONS_MAX} items")
        if signed.signed:
            for i, item in enumerate(data.transactions):
                if item.id is None:
                    raise InvalidRequest.at(f"transactions[{i}].id", SIGNED_IDS)
        mode, now = Mode(data.mode), utc_now()
        drafts: list[Draft | LedgerError] = []
        for i, item in enumerate(data.transactions):
            try:
                drafts.append(item.draft(mode, now, ledger.limits))
            except LedgerError as error:
                error.detail = f"transactions[{i}]: {error.detail}"
                drafts.append(error)
        valid = [d for d in drafts if isinstance(d, Draft)]
        if data.atomic and len(valid) < len(drafts):
            # An invalid item fails an atomic batch before anything is recorded.
            first = next(i for i, d in enumerate(drafts) if not isinstance(d, Draft))
            drafts = [d if i == first else BatchFailed() for i, d in enumerate(drafts)]
            valid = []
        results = (
            await ledger.create_many(tenant_of(request), valid, data.atomic, signed)
            if valid
            else []
        )
        refused = next((r.error for r in results if isinstance(r.error, SIGNATURE_ERRORS)), None)
        if refused is not None:
            raise refused
        answer = batch_out(data.transactions, drafts, results)
        count_transactions(*(item.status for item in answer.results))
        return answer

    @get(BY_ID, opt={FAST: _fast_read})
    async def read(
        self, request: Request[Any, Any, State], ledger: Ledger, store: PostgresStore
    ) -> TransactionOut | ProofOut:
        """A transaction; `/proof`, the signed request it was recorded from."""
        transaction_id, suffix = split_rest(request.scope, PREFIX, ("proof",))
        if suffix == "proof":
            proof = await read_proof(store, tenant_of(request), transaction_id)
            if proof is None:
                raise NotFound(f"no proof for transaction {transaction_id}")
            return proof_out(proof)
        return await read_transaction(ledger, tenant_of(request), transaction_id)

    @put(BY_ID, opt={FAST: _fast_execute})
    async def execute_or_replace_data(
        self, request: Request[Any, Any, State], ledger: Ledger
    ) -> TransactionOut:
        """`PUT /{id}` executes a PENDING transaction; `PUT /{id}/data` replaces its data."""
        tenant = tenant_of(request)
        transaction_id, suffix = split_rest(request.scope, PREFIX, ("data",))
        if suffix == "data":
            body = decode_body(await request.body(), DataIn)
            return transaction_out(
                await ledger.replace_transaction_data(tenant, transaction_id, body.data)
            )
        return await execute_transaction(ledger, tenant, transaction_id)

    @delete(BY_ID, status_code=200)
    async def cancel(
        self, request: Request[Any, Any, State], ledger: Ledger, store: PostgresStore
    ) -> TransactionOut:
        """Void a PENDING transaction or reverse a COMPLETED one (signed when the
        reversal takes money out of an owned account)."""
        transaction_id, suffix = split_rest(request.scope, PREFIX, ())
        if suffix:
            raise NotFound("no such resource")
        signed = await authority(store, request.scope, await request.body())
        transaction = await ledger.cancel(tenant_of(request), transaction_id, signed)
        count_transactions(transaction.status.value)
        return transaction_out(transaction)
