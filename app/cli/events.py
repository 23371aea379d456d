"""`twofold events tail`: the tenant's log, live, a line per event."""

from __future__ import annotations

import json
from typing import Annotated

import httpx
import typer

from app.cli.api import DEFAULT_KEY, ApiKey, ServiceUrl, api_client

events = typer.Typer(help="The tenant's log.")


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
