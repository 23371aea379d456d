"""What the `twofold` commands that call the API share: where the service is, the
tenant's key, and a client with both."""

from __future__ import annotations

from typing import Annotated

import httpx
import typer

ServiceUrl = Annotated[str, typer.Option("--url", envvar="TWOFOLD_URL", help="the service")]
ApiKey = Annotated[
    str,
    typer.Option("--api-key", envvar="TWOFOLD_API_KEY", help="<public key>:<secret> of the tenant"),
]
DEFAULT_URL = "http://127.0.0.1:8910"
DEFAULT_KEY = "abc:123"  # the development tenant of .env


def api_client(url: str, api_key: str, timeout: float | httpx.Timeout) -> httpx.Client:
    user, _, secret = api_key.partition(":")
    return httpx.Client(base_url=url, auth=(user, secret), timeout=timeout)
