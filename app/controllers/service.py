"""Service routes without an API key: liveness and readiness."""

from __future__ import annotations

from litestar import Controller, Response, get
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.ledger.errors import Unavailable
from app.metrics import render
from app.models.store import PostgresStore
from app.problems import problem_response


class ServiceController(Controller):
    path = "/"
    include_in_schema = False

    @get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/metrics", media_type="text/plain")
    async def metrics(self, store: PostgresStore) -> Response[bytes]:
        body, content_type = render(store.connections_in_use())
        # NOTE: as a header, not a media type: Litestar would add a second charset to
        # Prometheus's own, which names one.
        return Response(body, headers={"content-type": content_type})

    @get("/ready")
    async def ready(self, store: PostgresStore, redis: Redis) -> Response[bytes] | dict[str, str]:
        down = []
        try:
            await store.ping()
        except Unavailable:
            down.append("database")
        try:
            await redis.ping()
        except (RedisError, OSError):
            down.append("redis")
        if down:
            return problem_response(
                "unavailable", f"not answering: {', '.join(down)}", headers={"Retry-After": "1"}
            )
        return {"status": "ok"}
