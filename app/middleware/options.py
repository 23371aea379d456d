"""`OPTIONS` and `405` with `Allow`, answered before authentication."""

from __future__ import annotations

import re
from collections.abc import Sequence

from app.middleware.asgi import ASGIApp, Receive, Scope, Send


class Options:
    """Answers `OPTIONS` with the route's methods in `Allow`.

    NOTE: Litestar makes a route's OPTIONS handler when the route's first handler is
    registered and keeps it when more are merged in, so `OPTIONS /v1/accounts` omitted
    GET. CORS preflights never get here: the CORS layer before the router answers them.
    """

    def __init__(
        self, app: ASGIApp, documented: Sequence[tuple[re.Pattern[str], frozenset[str]]] = ()
    ) -> None:
        self.app = app
        self.documented = documented
        self.allow: dict[str, str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 204,
                    "headers": [(b"allow", self._allow(scope).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _allow(self, scope: Scope) -> str:
        raw = bytes(scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        path = raw.partition("?")[0]
        # A fixed route may also be a valid id (`/v1/transactions/batch`): both answer.
        found = {m for pattern, methods in self.documented if pattern.fullmatch(path)
                 for m in methods}  # fmt: skip
        if found:
            return ", ".join(sorted(found))
        if self.allow is None:
            self.allow = {
                route.path_format: ", ".join(sorted(route.methods)) for route in scope["app"].routes
            }
        return self.allow.get(scope.get("path_template", ""), "OPTIONS")
