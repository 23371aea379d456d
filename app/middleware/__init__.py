"""ASGI middleware for `/v1`, one a module, in the order `app/main.py` stacks them:
`Options`, `BodyLimit`, `Authentication`, `RateLimit`, `Idempotency`; `asgi.py` holds
the raw ASGI they and the fast path share."""

from app.middleware.authentication import Authentication
from app.middleware.body_limit import BodyLimit
from app.middleware.idempotency import Idempotency
from app.middleware.options import Options
from app.middleware.rate_limit import RateLimit

__all__ = ["Authentication", "BodyLimit", "Idempotency", "Options", "RateLimit"]
