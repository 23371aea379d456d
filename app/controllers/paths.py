"""Ids may hold `/`: the rest of a path is split on its raw (still encoded) slashes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from litestar import Request

from app.ledger.errors import NotFound
from app.ledger.money import check_id


def split_rest(scope: Mapping[str, Any], prefix: str, suffixes: tuple[str, ...]) -> tuple[str, str]:
    """(id, suffix) from `{prefix}/{id}[/{suffix}]` in a request's ASGI scope; `%2F`
    inside an id stays in the id."""
    raw = scope.get("raw_path") or scope["path"].encode()
    rest = bytes(raw).decode("latin-1").partition("?")[0][len(prefix) + 1 :]
    head, slash, last = rest.rpartition("/")
    if slash and head and last in suffixes:
        resource_id, suffix = unquote(head), last
    else:
        resource_id, suffix = unquote(rest), ""
    if not resource_id:
        raise NotFound("no such resource")
    # An id the contract does not allow (a NUL, a space) was never stored: say so, rather
    # than hand the database text it may not be able to compare.
    check_id(resource_id, "id")
    return resource_id, suffix


def tenant_of(request: Request[Any, Any, Any]) -> str:
    tenant: str = request.scope["state"]["tenant"]
    return tenant
