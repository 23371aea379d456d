"""What the `twofold` commands that call the API share: where the service is, the
tenant's key, and a client with both."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import httpx
import typer

from app.settings import Settings, local_address

ServiceUrl = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="TWOFOLD_URL",
        help="the service [default: http://HOST:PORT of the service's settings (.env)]",
        show_default=False,
    ),
]  # fmt: skip
ApiKey = Annotated[
    str,
    typer.Option("--api-key", envvar="TWOFOLD_API_KEY", help="<public key>:<secret> of the tenant"),
]
DEFAULT_KEY = "abc:123"  # the development tenant of .env


def service_url() -> str:
    """Where the service of this checkout listens: HOST and PORT as it reads them (the
    environment over `.env`)."""
    settings = Settings.from_env()
    return local_address(settings.host, settings.port)[2]


@contextmanager
def api_client(
    url: str | None, api_key: str, timeout: float | httpx.Timeout
) -> Iterator[httpx.Client]:
    """A client of the service at `url` (default: `service_url()`); a service that cannot
    be reached ends the command with one line saying where it looked."""
    base_url = url or service_url()
    user, _, secret = api_key.partition(":")
    try:
        with httpx.Client(base_url=base_url, auth=(user, secret), timeout=timeout) as client:
            yield client
    except httpx.TransportError as exc:
        typer.echo(
            f"twofold: no answer from the service at {base_url} ({type(exc).__name__}: {exc});"
            " start it (make run) or name it with --url or TWOFOLD_URL",
            err=True,
        )
        raise typer.Exit(2) from None
