"""`/v1/accounts`: create, read, replace data, balances at an instant, the journal."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post, put
from litestar.datastructures import State
from litestar.exceptions import MethodNotAllowedException

from app.controllers.fastpath import FAST, plain_query
from app.controllers.paths import split_rest, tenant_of
from app.controllers.schemas import (
    AccountIn,
    AccountOut,
    AccountsOut,
    BalancesAtOut,
    DataIn,
    EntriesOut,
    EntryOut,
    KeysIn,
    account_out,
    balance_out,
    decode_body,
    decode_query,
    utc_now,
)
from app.controllers.signatures import authority, check_key_material
from app.ledger.documents import new_id, parse_instant
from app.ledger.errors import InvalidRequest, NotFound
from app.ledger.money import EXACT, check_currency, format_amount
from app.ledger.records import Account
from app.ledger.rules import Rule
from app.ledger.search import Page, Target, parse_page
from app.ledger.service import Ledger
from app.middleware.asgi import Receive, Scope
from app.models.search import search_accounts
from app.models.store import PostgresStore

PAGE_LIMIT_MAX = 1000
PAGE_LIMIT_DEFAULT = 100
PREFIX = "/v1/accounts"
# `/{id}` routes, and the fixed route whose name is a valid id too (see transactions).
BY_ID = ["/{rest:path}", "/_search"]
ACCOUNT_SUFFIXES = ("balances", "entries")


def page_limit(value: str | None) -> int:
    if value is None:
        return PAGE_LIMIT_DEFAULT
    if not value.isdigit() or not 1 <= int(value) <= PAGE_LIMIT_MAX:
        raise InvalidRequest(f"limit: a whole number from 1 to {PAGE_LIMIT_MAX}")
    return int(value)


async def stored_account(store: PostgresStore, tenant: str, account_id: str) -> Account:
    account = await store.account(tenant, account_id)
    if account is None:
        raise NotFound(f"no account {account_id}")
    return account


async def balances_at(
    store: PostgresStore, tenant: str, account_id: str, at: str | None, currency: str | None
) -> BalancesAtOut:
    """`GET /{id}/balances`: as they stood at `at` (default: now), in one currency or all."""
    if currency is not None:
        check_currency(currency, "currency")
    instant = utc_now() if at is None else parse_instant(at, "at")
    rows = await store.balances_at(tenant, account_id, instant, currency)
    if rows is None:
        raise NotFound(f"no account {account_id}")
    return BalancesAtOut(
        account=account_id,
        at=instant,
        balances={r.currency: balance_out(r.posted, r.pending_in, r.pending_out) for r in rows},
    )


async def search_page(request: Request[Any, Any, State], target: Target, depth_max: int) -> Page:
    """The query from the body (GET or POST) and the query-string shortcuts."""
    body = decode_query(await request.body())
    return parse_page(target, body, dict(request.query_params), depth_max)


async def _search(request: Request[Any, Any, State], store: PostgresStore) -> AccountsOut:
    page = await search_page(request, Target.ACCOUNTS, store.settings.json_depth_max)
    accounts, cursor = await search_accounts(store, tenant_of(request), page)
    return AccountsOut(items=[account_out(a) for a in accounts], next=cursor)


async def _fast_read(
    _: Ledger, store: PostgresStore, scope: Scope, __: Receive
) -> tuple[AccountOut | BalancesAtOut, int] | None:
    """`FastPath`'s answer: an account, or its balances, with a plain query string; the
    journal and anything with a query to decode, the handler."""
    query = plain_query(scope.get("query_string", b""), ("at", "currency"))
    if query is None:
        return None
    try:
        account_id, suffix = split_rest(scope, PREFIX, ACCOUNT_SUFFIXES)
    except NotFound:
        return None
    tenant = scope["state"]["tenant"]
    if suffix == "balances":
        at, currency = query.get("at"), query.get("currency")
        return await balances_at(store, tenant, account_id, at, currency), 200
    if suffix == "" and not query:
        return account_out(await stored_account(store, tenant, account_id)), 200
    return None


class AccountController(Controller):
    path = PREFIX

    @get("/")
    async def search(self, request: Request[Any, Any, State], store: PostgresStore) -> AccountsOut:
        """Search accounts: the query in the body, or none for all; by id."""
        return await _search(request, store)

    @post("/_search", status_code=200)
    async def search_by_post(
        self, request: Request[Any, Any, State], store: PostgresStore
    ) -> AccountsOut:
        """The same search, for clients that cannot send a GET body."""
        return await _search(request, store)

    @post("/", status_code=201)
    async def create(
        self, request: Request[Any, Any, State], ledger: Ledger
    ) -> Response[AccountOut]:
        data = decode_body(await request.body(), AccountIn)
        account_id = new_id() if data.id is None else data.id
        keys = [k.key() for k in data.keys]
        check_key_material(keys)
        account, created = await ledger.create_account(
            tenant_of(request), account_id, Rule(data.balance_rule), data.data, keys
        )
        return Response(account_out(account), status_code=201 if created else 200)

    @get(BY_ID, opt={FAST: _fast_read})
    async def read(
        self,
        request: Request[Any, Any, State],
        store: PostgresStore,
        at: str | None = None,
        currency: str | None = None,
        limit: str | None = None,
        after: str | None = None,
    ) -> AccountOut | BalancesAtOut | EntriesOut:
        """An account; `/balances` as they stood at `at`; `/entries`, its journal."""
        tenant = tenant_of(request)
        account_id, suffix = split_rest(request.scope, PREFIX, ACCOUNT_SUFFIXES)
        if suffix == "balances":
            return await balances_at(store, tenant, account_id, at, currency)
        if currency is not None:
            check_currency(currency, "currency")
        # NOTE: the store, not the ledger: with two dependencies Litestar resolves them in
        # an anyio task group, two tasks per request.
        account = await stored_account(store, tenant, account_id)
        if suffix == "entries":
            page, cursor = await store.entries(
                tenant, account.id, currency, page_limit(limit), after
            )
            return EntriesOut(
                items=[
                    EntryOut(
                        seq=e.seq,
                        transaction_id=e.transaction_id,
                        currency=e.currency,
                        amount=format_amount(e.amount),
                        kind=e.kind,
                        posted=format_amount(e.posted),
                        pending_in=format_amount(e.pending_in),
                        pending_out=format_amount(e.pending_out),
                        available=format_amount(EXACT.subtract(e.posted, e.pending_out)),
                        timestamp=e.timestamp,
                    )
                    for e in page
                ],
                next=cursor,
            )
        return account_out(account)

    @put(BY_ID)
    async def replace_data_or_keys(
        self, request: Request[Any, Any, State], ledger: Ledger, store: PostgresStore
    ) -> AccountOut:
        """`PUT /{id}` replaces the account's data; `PUT /{id}/keys` its keys (signed by
        one of its current keys when it has any)."""
        account_id, suffix = split_rest(request.scope, PREFIX, (*ACCOUNT_SUFFIXES, "keys"))
        tenant = tenant_of(request)
        if suffix == "keys":
            raw = await request.body()
            signed = await authority(store, request.scope, raw)
            keys = [k.key() for k in decode_body(raw, KeysIn).keys]
            check_key_material(keys)
            return account_out(await ledger.replace_keys(tenant, account_id, keys, signed))
        if suffix:
            # `/balances` and `/entries` are read-only: a method they lack, as for any route.
            raise MethodNotAllowedException(headers={"Allow": "GET, OPTIONS"})
        body = decode_body(await request.body(), DataIn)
        return account_out(await ledger.replace_account_data(tenant, account_id, body.data))
