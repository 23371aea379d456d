"""`/v1/sinks`: the tenant's log pushed to webhooks, Redis Streams, NATS and RabbitMQ."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State

from app.controllers.paths import split_rest, tenant_of
from app.controllers.schemas import Body, decode_body
from app.ledger.documents import new_id
from app.ledger.errors import NotFound, SinkExists
from app.ledger.money import check_id
from app.models import sinks as stored
from app.models.log import read_log_head
from app.models.sinks import Sink
from app.models.store import PostgresStore
from app.streams.sink_spec import SinkSpec, check_spec, masked, new_secret

PREFIX = "/v1/sinks"


class SinkIn(Body):
    type: str
    url: str
    id: str | None = None
    types: list[str] | None = None
    after: int | None = None
    batch_max: int | None = None


class SinkOut(msgspec.Struct, omit_defaults=True):
    id: str
    type: str
    url: str
    types: list[str] | None
    delivered: int
    head: int
    failures: int
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    batch_max: int | None = None  # a webhook's
    secret: str | None = None  # a webhook's, in the answer that made it only


class SinksOut(msgspec.Struct):
    items: list[SinkOut]


def _out(sink: Sink, head: int, secret: str | None = None) -> SinkOut:
    return SinkOut(
        id=sink.id, type=sink.type, url=masked(sink.url),
        types=None if sink.types is None else list(sink.types), delivered=sink.delivered,
        head=head, failures=sink.failures, last_error=sink.last_error,
        last_attempt_at=sink.last_attempt_at, next_attempt_at=sink.next_attempt_at,
        batch_max=sink.batch_max if sink.type == "webhook" else None, secret=secret,
    )  # fmt: skip


async def _head(store: PostgresStore, tenant: str) -> int:
    return (await read_log_head(store, tenant)).sequence


async def _found(store: PostgresStore, tenant: str, sink: Sink | None) -> SinkOut:
    """The sink as answered, with the log's head; 404 when there was none."""
    if sink is None:
        raise NotFound("no such sink")
    return _out(sink, await _head(store, tenant))


def _sink_id(request: Request[Any, Any, State]) -> str:
    sink_id, _ = split_rest(request.scope, PREFIX, ())
    return sink_id


class SinkController(Controller):
    path = PREFIX

    @post("/")
    async def create(
        self, request: Request[Any, Any, State], store: PostgresStore
    ) -> Response[SinkOut]:
        tenant = tenant_of(request)
        body = decode_body(await request.body(), SinkIn)
        sink_id = new_id() if body.id is None else body.id
        check_id(sink_id, "id")
        types = None if body.types is None else tuple(body.types)
        spec = check_spec(SinkSpec(sink_id, body.type, body.url, types, body.after,
                                   body.batch_max), store.settings.sink_hosts)  # fmt: skip
        secret = new_secret() if spec.type == "webhook" else None
        sink, made = await stored.create(store, tenant, spec, secret)
        if not made and sink.fingerprint != spec.fingerprint:
            raise SinkExists(f"sink {sink_id} exists with another body")
        head = await _head(store, tenant)
        return Response(
            _out(sink, head, secret if made else None), status_code=201 if made else 200
        )

    @get("/")
    async def listed(self, request: Request[Any, Any, State], store: PostgresStore) -> SinksOut:
        tenant = tenant_of(request)
        head = await _head(store, tenant)
        return SinksOut([_out(s, head) for s in await stored.listed(store, tenant)])

    @get("/{rest:path}")
    async def read(self, request: Request[Any, Any, State], store: PostgresStore) -> SinkOut:
        tenant = tenant_of(request)
        return await _found(store, tenant, await stored.read(store, tenant, _sink_id(request)))

    @delete("/{rest:path}", status_code=200)
    async def remove(self, request: Request[Any, Any, State], store: PostgresStore) -> SinkOut:
        tenant = tenant_of(request)
        return await _found(store, tenant, await stored.delete(store, tenant, _sink_id(request)))
