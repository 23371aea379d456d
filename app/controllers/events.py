"""`/v1/events`: the tenant's log, a page at a time, its head, and a live stream (SSE)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.response import Stream

from app.controllers.accounts import page_limit
from app.controllers.paths import tenant_of
from app.ledger.errors import InvalidRequest
from app.ledger.log import format_instant
from app.ledger.records import EVENT_TYPES
from app.models.log import read_events, read_log_head
from app.models.store import PostgresStore
from app.streams.tail import LogTail, Page

KEEPALIVE_S = 10.0


def sequence_param(value: str | None, name: str) -> int:
    if value is None or value == "":
        return 0
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise InvalidRequest.at(name, "a sequence number (a whole number, 0 or more)")
    return int(value)


def type_param(value: str | None) -> str | None:
    if value is not None and value not in EVENT_TYPES:
        raise InvalidRequest.at("type", f"one of {', '.join(EVENT_TYPES)}")
    return value


def _json(body: bytes) -> Response[bytes]:
    return Response(body, media_type="application/json")


class EventController(Controller):
    path = "/v1/events"

    @get("/")
    async def page(
        self, request: Request[Any, Any, State], store: PostgresStore
    ) -> Response[bytes]:
        query = request.query_params
        after = sequence_param(query.get("after"), "after")
        limit = page_limit(query.get("limit"))
        kind = type_param(query.get("type"))
        found = await read_events(store, tenant_of(request), after, limit, kind)
        cursor = f'"{found[-1].sequence}"' if len(found) == limit else "null"
        items = ",".join(event.text for event in found)
        return _json(f'{{"items":[{items}],"next":{cursor}}}'.encode())

    @get("/head")
    async def head(self, request: Request[Any, Any, State], store: PostgresStore) -> dict[str, Any]:
        head = await read_log_head(store, tenant_of(request))
        at = None if head.at is None else format_instant(head.at)
        return {"sequence": head.sequence, "hash": head.hash, "at": at}

    @get("/stream")
    async def stream(self, request: Request[Any, Any, State], tail: LogTail) -> Stream:
        # A reconnecting EventSource sends the last id it saw: that wins over `after`.
        last_id = request.headers.get("last-event-id")
        after = (
            sequence_param(last_id, "Last-Event-ID")
            if last_id
            else sequence_param(request.query_params.get("after"), "after")
        )
        events = tail.follow(tenant_of(request), after)
        return Stream(
            _sse(events),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


async def _sse(pages: AsyncIterator[Page]) -> AsyncIterator[bytes]:
    """Each event as `id`, `event`, `data`, a page of them per write; a comment line
    while nothing happens."""
    yield b": connected\n\n"
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(pages))
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
            if not done:
                yield b": keep-alive\n\n"
                continue
            page, pending = pending.result(), None
            yield page.sse
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        await pages.aclose()  # type: ignore[attr-defined]
