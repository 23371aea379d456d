"""`twofold tenants new` and `twofold events tail`: a tenant's API key, and its log live."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Annotated

import httpx
import typer

from app.cli_api import DEFAULT_KEY, ApiKey, ServiceUrl, api_client

tenants = typer.Typer(help="Tenants: each its own API key and its own ledger.")
events = typer.Typer(help="The tenant's log.")


@tenants.command("new")
def new_tenant(
    name: Annotated[str, typer.Argument(help="the tenant's name (its ledger's namespace)")],
    email: Annotated[
        str | None, typer.Option(help="a contact, kept in KEYS (null when not given)")
    ] = None,
) -> None:
    """Make an API key pair for a new tenant.

    Prints its `KEYS` entry, every field of it (add it to the KEYS list of every server
    process) and, once, its secret, which is kept nowhere."""
    public_key = f"pk_{secrets.token_hex(8)}"
    secret = f"sk_{secrets.token_urlsafe(24)}"
    entry = {"name": name, "email": email, "public-key": public_key,
             "secret-key-hash": hashlib.sha256(secret.encode()).hexdigest()}  # fmt: skip
    typer.echo(json.dumps(entry))
    typer.echo(f"secret (shown once): {secret}", err=True)
    typer.echo(f"sign requests with: -u {public_key}:{secret}", err=True)


@events.command("tail")
def tail(
    after: Annotated[int | None, typer.Option(help="start after this sequence (default: now)")] = (
        None
    ),
    url: ServiceUrl = None,
    api_key: ApiKey = DEFAULT_KEY,
) -> None:
    """Follow the log as it grows, one line per event.

    Each line: its sequence, type, what it is about and when. Ctrl-C stops."""
    # The stream sends a keep-alive comment every 10 s: a minute without one is a lost link.
    with api_client(url, api_key, timeout=httpx.Timeout(30, read=60)) as client:
        if after is None:
            after = int(client.get("/v1/events/head").raise_for_status().json()["sequence"])
        try:
            with client.stream("GET", "/v1/events/stream", params={"after": after}) as answer:
                answer.raise_for_status()
                for line in answer.iter_lines():
                    if line.startswith("data: "):
                        typer.echo(_summary(json.loads(line[len("data: ") :])))
        except KeyboardInterrupt:
            return


def _summary(event: dict[str, object]) -> str:
    subject = event.get("transaction") or event.get("account") or {}
    assert isinstance(subject, dict)
    return f"{event['sequence']}\t{event['type']}\t{subject.get('id', '')}\t{event['at']}"
