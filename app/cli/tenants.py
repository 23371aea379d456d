"""`twofold tenants new`: a tenant's API key pair and its `KEYS` entry."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Annotated

import typer

tenants = typer.Typer(help="Tenants: each its own API key and its own ledger.")


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
