"""`FastPath`: the hottest routes answered without Litestar's handler pipeline.

A route handler opts in by naming, in its own metadata (`opt={FAST: answer}`), the
function that answers it here; routing has run, so `scope["route_handler"]` is that
handler, and nothing is routed twice or kept in step by hand. `answer(ledger, store,
scope, receive)` answers as the handler would, by the same functions, or returns None
before reading the body: the handler then answers (a query string with anything to
decode, a sub-resource it does not serve). With `FAST_PATH=0` every request goes to the
handlers, which tests use to ask both paths the same questions.

NOTE: under `uniform` this cut the service's CPU per transfer by more than a quarter
(docs/performance.md, "Figures behind the code"); Litestar's request and response
objects were most of the difference.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from app.ledger.errors import LedgerError
from app.middleware.asgi import ASGIApp, Receive, Scope, Send, send_raw
from app.problems import PROBLEM_MEDIA_TYPE, ledger_problem

if TYPE_CHECKING:
    from app.ledger.service import Ledger
    from app.models.store import PostgresStore

FAST = "fast"  # the key of a route handler's `opt` naming its `Answer`
Answer = Callable[
    ["Ledger", "PostgresStore", Scope, Receive], Awaitable[tuple[msgspec.Struct, int] | None]
]
_encode_json = msgspec.json.Encoder()


class FastPath:
    """The innermost middleware: routing, authentication, limits, idempotency and
    metrics have run."""

    def __init__(self, app: ASGIApp, ledger: Ledger, store: PostgresStore) -> None:
        self.app = app
        self.ledger = ledger
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler: Any = scope.get("route_handler")
        answer: Answer | None = handler.opt.get(FAST) if handler is not None else None
        if answer is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            answered = await answer(self.ledger, self.store, scope, receive)
            if answered is None:
                await self.app(scope, receive, send)
                return
        except LedgerError as exc:
            status, problem, headers = ledger_problem(exc)
            await send_raw(send, status, problem, PROBLEM_MEDIA_TYPE, headers)
            return
        body, status = answered
        await send_raw(send, status, _encode_json.encode(body), "application/json")


def plain_query(query: bytes, names: tuple[str, ...]) -> dict[str, str] | None:
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
