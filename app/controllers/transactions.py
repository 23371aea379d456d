"""`/v1/transactions`: create (pending or immediate), read, execute, void/reverse, data."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import State

from app.controllers.accounts import decode_data, search_page
from app.controllers.paths import split_rest, tenant_of
from app.controllers.schemas import (
    TransactionIn,
    TransactionOut,
    TransactionsOut,
    transaction_out,
    utc_now,
)
from app.ledger.documents import Mode
from app.ledger.errors import NotFound
from app.ledger.search import Target
from app.ledger.service import Ledger
from app.models.search import search_transactions
from app.models.store import PostgresStore

PREFIX = "/v1/transactions"


async def _search(request: Request[Any, Any, State], store: PostgresStore) -> TransactionsOut:
    page = await search_page(request, Target.TRANSACTIONS)
    found, cursor = await search_transactions(store, tenant_of(request), page)
    return TransactionsOut(items=[transaction_out(t) for t in found], next=cursor)


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
        draft = data.draft(mode, utc_now())
        transaction, created = await ledger.create(tenant_of(request), draft)
        return Response(transaction_out(transaction), status_code=201 if created else 200)

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

    @get("/{rest:path}")
    async def read(self, request: Request[Any, Any, State], ledger: Ledger) -> TransactionOut:
        transaction_id, _ = split_rest(request, PREFIX, ())
        return transaction_out(await ledger.transaction(tenant_of(request), transaction_id))

    @put("/{rest:path}")
    async def execute_or_replace_data(
        self, request: Request[Any, Any, State], ledger: Ledger
    ) -> TransactionOut:
        """`PUT /{id}` executes a PENDING transaction; `PUT /{id}/data` replaces its data."""
        tenant = tenant_of(request)
        transaction_id, suffix = split_rest(request, PREFIX, ("data",))
        if suffix == "data":
            body = decode_data(await request.body())
            return transaction_out(
                await ledger.replace_transaction_data(tenant, transaction_id, body.data)
            )
        return transaction_out(await ledger.execute(tenant, transaction_id))

    @delete("/{rest:path}", status_code=200)
    async def cancel(self, request: Request[Any, Any, State], ledger: Ledger) -> TransactionOut:
        """Void a PENDING transaction or reverse a COMPLETED one."""
        transaction_id, suffix = split_rest(request, PREFIX, ())
        if suffix:
            raise NotFound("no such resource")
        return transaction_out(await ledger.cancel(tenant_of(request), transaction_id))
