"""Tenant authentication of `/v1` (HTTP Basic or Bearer, constant-time)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from app.middleware.asgi import API_PREFIX, ASGIApp, Receive, Scope, Send, header, send_problem
from app.settings import Tenant


class Authentication:
    """Resolves the tenant from HTTP Basic or `Bearer <public-key>:<secret>`."""

    def __init__(self, app: ASGIApp, tenants: tuple[Tenant, ...]) -> None:
        self.app = app
        self.tenants = {t.public_key: t for t in tenants}
        # NOTE: an unknown public key still costs one comparison, like a known one.
        self.decoy = hashlib.sha256(b"decoy").digest()

    def tenant(self, authorization: str | None) -> str | None:
        if not authorization:
            return None
        scheme, _, credentials = authorization.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "basic":
            try:
                credentials = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
        elif scheme.lower() != "bearer":
            return None
        public_key, sep, secret = credentials.partition(":")
        if not sep:
            return None
        tenant = self.tenants.get(public_key)
        expected = tenant.secret_key_hash if tenant else self.decoy
        given = hashlib.sha256(secret.encode()).digest()
        if hmac.compare_digest(given, expected) and tenant is not None:
            return tenant.name
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # NOTE: CORS preflights carry no credentials; Litestar's CORS layer answers them.
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or not scope["path"].startswith(API_PREFIX + "/")
        ):
            await self.app(scope, receive, send)
            return
        authorization = header(scope, b"authorization")
        tenant = self.tenant(authorization)
        if tenant is None:
            # A Bearer client is challenged as one: a Basic challenge makes a browser (the
            # console, which sends Bearer) open its own sign-in dialog.
            scheme = "Bearer" if (authorization or "").lower().startswith("bearer") else "Basic"
            await send_problem(
                send,
                "unauthenticated",
                "a valid API key is required",
                {"WWW-Authenticate": f'{scheme} realm="twofold"'},
            )
            return
        scope.setdefault("state", {})["tenant"] = tenant
        await self.app(scope, receive, send)
