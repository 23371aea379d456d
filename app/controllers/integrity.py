"""`POST /v1/verify`: the tenant's ledger re-checked from its stored rows."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.datastructures import State

from app.controllers.paths import tenant_of
from app.models.audit import verify
from app.models.store import PostgresStore


class IntegrityController(Controller):
    path = "/v1/verify"

    @post("/", status_code=200)
    async def verify(self, request: Request[Any, Any, State], store: PostgresStore) -> Any:
        async with store.scan_connection() as connection:
            return await verify(connection.raw, tenant_of(request))
