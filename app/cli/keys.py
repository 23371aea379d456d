"""`twofold keys`: key pairs for owned accounts, signed requests, and checking proofs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.api import DEFAULT_KEY, ApiKey, ServiceUrl, api_client
from app.signing import check_proof, generate_ed25519, labels, load_private_key, sign

keys = typer.Typer(help="Own accounts with key pairs: generate, sign a request, check a proof.")


@keys.command()
def generate(
    out: Annotated[Path, typer.Option(help="where the private key goes (PEM, mode 600)")],
    key_id: Annotated[str, typer.Option("--key-id", help="the key's id on the account")] = "k1",
) -> None:
    """Make an Ed25519 key pair for an account.

    The private key goes into OUT; the key entry for the account's `keys` is printed
    (POST /v1/accounts or PUT /v1/accounts/{id}/keys)."""
    if out.exists():
        typer.echo(f"{out} exists; not overwriting a private key", err=True)
        raise typer.Exit(1)
    private, public = generate_ed25519()
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(private)
    typer.echo(json.dumps({"id": key_id, "alg": "ed25519", "public_key": public}))


@keys.command("sign")
def sign_command(
    keyid: Annotated[list[str], typer.Option(help='"<account id>/<key id>", once per signer')],
    key: Annotated[list[Path], typer.Option(help="its private key (PEM), in the same order")],
    path: Annotated[str, typer.Option(help="the request's path, e.g. /v1/transactions")],
    method: Annotated[str, typer.Option(help="the request's method")] = "POST",
    body: Annotated[
        Path | None, typer.Option(help="the exact body to send (a file, or - for stdin)")
    ] = None,
) -> None:
    """Print the headers that sign a request (RFC 9421).

    Content-Digest, Signature-Input and Signature, signed with each key, one label per
    owned account it debits; send the body byte for byte."""
    if len(keyid) != len(key):
        typer.echo("give one --key for each --keyid", err=True)
        raise typer.Exit(2)
    data = b""
    if body is not None:
        data = sys.stdin.buffer.read() if str(body) == "-" else body.read_bytes()
    signers = [
        (k, load_private_key(file.read_bytes())[1]) for k, file in zip(keyid, key, strict=True)
    ]
    for name, value in sign(method, path, data, signers).items():
        typer.echo(f"{name.title()}: {value}")


@keys.command("check-proof")
def check_proof_command(
    transaction: Annotated[str, typer.Argument(help="the transaction whose proof to check")],
    url: ServiceUrl = None,
    api_key: ApiKey = DEFAULT_KEY,
) -> None:
    """Check a signed transaction's proof against its signers' keys.

    Fetches the proof and the keys (current and retired) of the accounts that signed it,
    and verify each signature; exit 1 when one does not verify."""
    with api_client(url, api_key, timeout=30) as client:
        answer = client.get(f"/v1/transactions/{transaction}/proof")
        if answer.status_code != 200:
            typer.echo(f"no proof: {answer.status_code} {answer.text}", err=True)
            raise typer.Exit(1)
        proof = answer.json()
        accounts: dict[str, Any] = {}
        for _, keyid in labels(proof["headers"]["signature-input"]):
            account = keyid.rpartition("/")[0]
            if account not in accounts:
                found = client.get(f"/v1/accounts/{account.replace('/', '%2F')}")
                accounts[account] = found.json() if found.status_code == 200 else {}
    lines = check_proof(proof, accounts)
    for line in lines:
        typer.echo(line)
    raise typer.Exit(0 if all(line.startswith("ok") for line in lines) else 1)
