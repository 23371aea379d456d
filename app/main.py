"""The ASGI application: `create_app()` is the factory the server calls in each worker."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.static_files import create_static_files_router
from redis.asyncio import Redis

from app.controllers.accounts import AccountController
from app.controllers.console import console_assets, console_page
from app.controllers.events import EventController
from app.controllers.fastpath import FastPath
from app.controllers.integrity import IntegrityController
from app.controllers.openapi import ASSETS, VENDOR, SchemaController, allowed_methods
from app.controllers.service import ServiceController
from app.controllers.sinks import SinkController
from app.controllers.transactions import TransactionController
from app.ledger.batcher import Batcher
from app.ledger.commit import commit_groups
from app.ledger.service import Ledger
from app.metrics import RequestMetrics, observe_batch
from app.middleware import Authentication, BodyLimit, Idempotency, Options, RateLimit
from app.models.store import PostgresStore
from app.problems import EXCEPTION_HANDLERS
from app.settings import Settings
from app.streams.delivery import SinkRunner
from app.streams.tail import LogTail

log = logging.getLogger("twofold")
SWEEP_BATCH = 100


async def sweep(ledger: Ledger, store: PostgresStore, settings: Settings) -> None:
    """Void holds past their `expires_at`."""
    while True:
        await asyncio.sleep(settings.expiry_sweep_interval_s)
        try:
            due = await store.due(SWEEP_BATCH)
            await asyncio.gather(*(ledger.expire(tenant, tid) for tenant, tid in due))
        except Exception:
            log.exception("the expiry sweep failed; it runs again")


# NOTE: a request allocates a few hundred tracked objects; at CPython's default of 700 a
# young collection ran every few requests, and every tenth of those walked the older
# generation too: a measurable share of a transfer request's CPU.
GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Collect less often, and never walk what startup built (it lives as long as the
    process)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def configure_logging(level_name: str) -> None:
    """LOG_LEVEL for every logger of the process.

    NOTE: the level is set on the root logger itself: `basicConfig` does nothing once
    the server has configured logging (granian does, with one worker), and httpx's INFO
    line for each webhook delivery then reached the log whatever LOG_LEVEL said. Those
    lines say nothing `/metrics` and the sink's own record do not, so httpx and httpcore
    speak only from WARNING up unless LOG_LEVEL is debug.
    """
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        level = logging.INFO
    logging.basicConfig(level=level)
    logging.getLogger().setLevel(level)
    quiet = level if level <= logging.DEBUG else max(level, logging.WARNING)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    store = PostgresStore(settings)
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
    )
    batcher = Batcher(
        functools.partial(commit_groups, store.begin_commit),
        settings.batch_size_max,
        settings.batch_wait_ms,
        observe_batch,
        settings.write_queue_max,
    )
    ledger = Ledger(store, batcher, clock=lambda: datetime.now(UTC), limits=settings.limits)
    tail = LogTail(store)
    sinks = SinkRunner(store, settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await store.open()
        await store.ensure_accounts([t.name for t in settings.tenants])
        sweeper = asyncio.create_task(sweep(ledger, store, settings))
        delivery = asyncio.create_task(sinks.run())
        tune_gc()
        try:
            yield
        finally:
            for task in (sweeper, delivery):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await sinks.close()
            await tail.close()
            await batcher.close()
            await redis.aclose()
            await store.close()

    def provide(value: Any) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    return Litestar(
        route_handlers=[
            AccountController,
            TransactionController,
            EventController,
            IntegrityController,
            SinkController,
            ServiceController,
            SchemaController,
            create_static_files_router(ASSETS, [VENDOR], include_in_schema=False),
            console_page,
            console_assets,
        ],
        dependencies={
            "ledger": provide(ledger),
            "store": provide(store),
            "redis": provide(redis),
            "tail": provide(tail),
        },
        # NOTE: these speak raw ASGI with plain dicts; Litestar's TypedDicts are narrower.
        middleware=[
            DefineMiddleware(cast(Any, RequestMetrics)),
            DefineMiddleware(cast(Any, Options), documented=allowed_methods()),
            DefineMiddleware(
                cast(Any, BodyLimit),
                body_size_max=settings.body_size_max,
                batch_body_size_max=settings.batch_body_size_max,
            ),
            DefineMiddleware(cast(Any, Authentication), tenants=settings.tenants),
            DefineMiddleware(
                cast(Any, RateLimit),
                redis=redis,
                per_s=settings.rate_limit_per_s,
                burst=settings.rate_limit_burst,
            ),
            DefineMiddleware(
                cast(Any, Idempotency),
                redis=redis,
                ttl_s=settings.idempotency_ttl_s,
                in_flight_ttl_s=settings.idempotency_in_flight_ttl_s,
            ),
            *(
                [DefineMiddleware(cast(Any, FastPath), ledger=ledger, store=store)]
                if settings.fast_path
                else []
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        request_max_body_size=None,  # BodyLimit caps bodies, per route
        cors_config=CORSConfig(allow_origins=list(settings.allowed_origins))
        if settings.allowed_origins
        else None,
        # The document is ours (app/controllers/openapi.py): one path per real route.
        openapi_config=None,
    )
