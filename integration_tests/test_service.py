"""Authentication, service routes and the OpenAPI document."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.embedded import free_port
from integration_tests.server import DATA, KEYS, ROOT, Backends, Service


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic " + base64.b64encode(b"abc:wrong").decode(),
        "Basic " + base64.b64encode(b"nobody:123").decode(),
        "Basic !!!",
        "Bearer abc",
        "Bearer abc:1234",
        "Token abc:123",
    ],
)
async def test_bad_credentials_are_401(anonymous: httpx.AsyncClient, authorization: str | None):
    headers = {"Authorization": authorization} if authorization else {}
    response = await anonymous.get("/v1/accounts/@world", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    # A Bearer client (the console) is challenged as one, never with Basic, which would
    # make a browser open its own sign-in dialog.
    bearer = (authorization or "").startswith("Bearer")
    expected = 'Bearer realm="twofold"' if bearer else 'Basic realm="twofold"'
    assert response.headers["www-authenticate"] == expected


async def test_bearer_and_basic_both_work(anonymous: httpx.AsyncClient):
    for authorization in ("Bearer abc:123", "Basic " + base64.b64encode(b"abc:123").decode()):
        response = await anonymous.get(
            "/v1/accounts/@world", headers={"Authorization": authorization}
        )
        assert response.status_code == 200


async def test_health_ready_schema(anonymous: httpx.AsyncClient):
    assert (await anonymous.get("/health")).json() == {"status": "ok"}
    assert (await anonymous.get("/ready")).status_code == 200
    schema = await anonymous.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.1")
    assert "/v1/transactions/immediate" in schema.json()["paths"]
    for page in ("/schema/swagger", "/schema/redoc"):
        answer = await anonymous.get(page)
        assert answer.status_code == 200
        # Assets come from the service itself: the pages work with no internet.
        assert "http" not in answer.text.replace("http-equiv", "")
        for asset in re.findall(r'(?:src|href)="(/schema/assets/[^"]+)"', answer.text):
            assert (await anonymous.get(asset)).status_code == 200, asset


async def test_metrics_name_their_content_type_once(anonymous: httpx.AsyncClient):
    answer = await anonymous.get("/metrics")
    assert answer.status_code == 200
    kind = answer.headers["content-type"]
    assert kind.startswith("text/plain; version=")
    assert kind.count("charset=") == 1, kind
    assert "twofold_requests_total" in answer.text


async def test_schema_describes_the_real_routes(anonymous: httpx.AsyncClient):
    answer = await anonymous.get("/schema")
    assert answer.headers["content-type"].startswith("application/json")
    document = answer.json()
    assert document == (await anonymous.get("/schema/openapi.json")).json()
    paths = document["paths"]
    assert not [p for p in paths if "rest" in p]
    for path in (
        "/v1/accounts/{id}/balances",
        "/v1/accounts/{id}/entries",
        "/v1/transactions/{id}/data",
        "/v1/transactions/batch",
        "/v1/events",
        "/v1/events/head",
        "/v1/events/stream",
        "/v1/verify",
        "/v1/sinks",
        "/v1/sinks/{id}",
    ):
        assert path in paths, path
    assert "text/event-stream" in paths["/v1/events/stream"]["get"]["responses"]["200"]["content"]
    assert set(paths["/v1/transactions/batch"]) == {"post"}
    assert set(paths["/v1/transactions/{id}"]) == {"get", "put", "delete"}
    assert set(document["components"]["securitySchemes"]) == {"basic", "bearer"}
    create = paths["/v1/transactions"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in create["parameters"]]
    codes = create["responses"]["422"]["content"]["application/problem+json"]["schema"]
    assert "insufficient_funds" in codes["properties"]["code"]["enum"]


async def test_options_and_405_name_the_methods(api: httpx.AsyncClient):
    options = await api.options("/v1/accounts")
    assert options.status_code == 204
    assert set(options.headers["allow"].split(", ")) == {"GET", "POST", "OPTIONS"}
    options = await api.options("/v1/transactions/x")
    assert set(options.headers["allow"].split(", ")) == {"GET", "PUT", "DELETE", "OPTIONS"}
    # A sub-resource names its own methods, not its parent's.
    for path, methods in (
        ("/v1/accounts/a%2Fb/balances", {"GET"}),
        ("/v1/accounts/x/entries", {"GET"}),
        ("/v1/transactions/x/data", {"PUT"}),
        ("/v1/accounts/x", {"GET", "PUT"}),
        ("/v1/events/head", {"GET"}),
        ("/v1/sinks/s", {"GET", "DELETE"}),
        ("/v1/verify", {"POST"}),
    ):
        options = await api.options(path)
        assert set(options.headers["allow"].split(", ")) == {*methods, "OPTIONS"}, path
    refused = await api.put("/v1/accounts/x/balances", json={"data": {}})
    assert refused.status_code == 405
    assert refused.json()["code"] == "invalid_request"
    assert set(refused.headers["allow"].split(", ")) == {"GET", "OPTIONS"}
    refused = await api.patch("/v1/accounts")
    assert refused.status_code == 405
    assert refused.json()["code"] == "invalid_request"
    assert set(refused.headers["allow"].split(", ")) == {"GET", "POST", "OPTIONS"}


async def test_unknown_route_is_404_problem(api: httpx.AsyncClient):
    response = await api.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_cors_for_allowed_origins(anonymous: httpx.AsyncClient):
    from integration_tests.conftest import ALLOWED_ORIGIN

    preflight = await anonymous.options(
        "/v1/transactions",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    answer = await anonymous.get(
        "/v1/accounts/@world",
        headers={"Origin": ALLOWED_ORIGIN, "Authorization": "Bearer abc:123"},
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    other = await anonymous.options(
        "/v1/transactions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
@pytest.mark.parametrize("page", ["swagger", "redoc"])
def test_api_pages_render_in_chromium_without_internet(service, page: str):
    """Headless Chromium, with its background networking off, renders the page from the
    service's own assets; a screenshot is kept in .data/screenshots for review."""
    out = DATA / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={out / ('profile-' + page)}", "--window-size=1280,800",
             "--virtual-time-budget=8000"]  # fmt: skip
    url = f"{service.base_url}/schema/{page}"
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    assert "/v1/accounts/{id}/balances" in dom
    subprocess.run(
        ["chromium", *flags, f"--screenshot={out / (page + '.png')}", url],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert (out / f"{page}.png").stat().st_size > 10_000


def test_a_second_start_on_the_same_data_folder_is_refused_and_the_first_serves_on(
    backends: Backends, tmp_path: Path
) -> None:
    """`make run` twice in one checkout: the second names the first and stops; the
    first's embedded PostgreSQL and Valkey are left alone."""
    data = tmp_path / "data"
    embedded = {"DATABASE_URL": "", "REDIS_URL": "", "DATA_DIR": str(data), "WORKERS": "1"}
    first = Service.start(backends, "embedded-first", **embedded)
    try:
        deadline = time.monotonic() + 30
        while "serving http://" not in first.log_path.read_text():
            assert time.monotonic() < deadline, first.log_path.read_text()
            time.sleep(0.1)
        assert f"serving {first.base_url} " in first.log_path.read_text()
        second = subprocess.run(
            [sys.executable, "-m", "app", "serve"], cwd=ROOT, capture_output=True, text=True,
            timeout=120, check=False,
            env={**os.environ, **embedded, "ENV_FILE": "/dev/null", "KEYS": KEYS,
                 "PORT": str(free_port())},
        )  # fmt: skip
        assert second.returncode == 1
        [line] = second.stderr.strip().splitlines()
        assert "already running" in line
        assert f"pid {first.process.pid}, serving {first.base_url}" in line
        assert httpx.get(f"{first.base_url}/ready", timeout=5).status_code == 200
        answer = httpx.post(f"{first.base_url}/v1/transactions/immediate", auth=("abc", "123"),
                            json={"type": "CREDIT", "account": "a", "currency": "USD",
                                  "amount": "1"}, timeout=10)  # fmt: skip
        assert answer.status_code == 201, answer.text
    finally:
        first.stop()
