"""Request bodies past `BODY_SIZE_MAX` (`BATCH_BODY_SIZE_MAX` for a batch) refused with `413`."""

from __future__ import annotations

from app.ledger.errors import PayloadTooLarge
from app.middleware.asgi import (
    API_PREFIX,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    header,
    send_problem,
)

BATCH_PATH = API_PREFIX + "/transactions/batch"


class BodyLimit:
    """Caps request bodies: `body_size_max`, or `batch_body_size_max` for the batch route."""

    def __init__(self, app: ASGIApp, body_size_max: int, batch_body_size_max: int) -> None:
        self.app = app
        self.body_size_max = body_size_max
        self.batch_body_size_max = batch_body_size_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.batch_body_size_max if scope["path"] == BATCH_PATH else self.body_size_max
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _drain(receive, int(declared))
            await send_problem(send, "payload_too_large", f"the body exceeds {limit} bytes")
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await _drain(receive, received)
                    raise PayloadTooLarge(f"the body exceeds {limit} bytes")
            return message

        await self.app(scope, limited, send)


# NOTE: a client still sending a body it was refused may see a reset instead of the 413
# (the server closes a connection with unread input); a modest body is read to the end
# first, a huge one is not worth it.
DRAIN_BYTES_MAX = 64 * 1024 * 1024


async def _drain(receive: Receive, already: int) -> None:
    """Read and drop the rest of a refused body, up to `DRAIN_BYTES_MAX` in all."""
    if already > DRAIN_BYTES_MAX:
        return
    total = 0
    while total <= DRAIN_BYTES_MAX:
        message = await receive()
        if message["type"] != "http.request":
            return
        total += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


# A token bucket per tenant, refilled at `rate` a second up to `burst`, kept in Redis so
# that every server process draws on the same one; Redis' clock, so theirs never matter.
