"""Starts the real service (several worker processes) for the integration tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from app.embedded import Stop, free_port, migrate, start_postgres, start_valkey

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
SECRET_HASH_123 = "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3"
# Two tenants: `test` (abc:123, as in API.md) and `other` (xyz:123).
KEYS = (
    '[{"name": "test", "email": "test@example.com", "public-key": "abc", '
    f'"secret-key-hash": "{SECRET_HASH_123}"}}, '
    '{"name": "other", "email": "other@example.com", "public-key": "xyz", '
    f'"secret-key-hash": "{SECRET_HASH_123}"}}]'
)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def new_database(server_url: str, name: str) -> tuple[str, Stop]:
    """A fresh, migrated database on the server of `server_url`, and what drops it."""
    asyncio.run(admin(server_url, f"DROP DATABASE IF EXISTS {name}"))
    asyncio.run(admin(server_url, f"CREATE DATABASE {name}"))
    database_url = with_database(server_url, name)

    def drop() -> None:
        asyncio.run(admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    migrate(database_url)
    return database_url, drop


@dataclass
class Backends:
    """PostgreSQL (a fresh database per run) and Redis for one test session."""

    database_url: str
    redis_url: str
    stops: list[Stop] = field(default_factory=list)

    @classmethod
    def start(cls, purpose: str = "test") -> Backends:
        """`{PURPOSE}_DATABASE_URL` / `{PURPOSE}_REDIS_URL`, else embedded servers."""
        started = cls("", "", [])
        try:
            started._start(purpose)
        except BaseException:
            started.stop()
            raise
        return started

    def _start(self, purpose: str) -> None:
        stops = self.stops
        server_url = os.environ.get(f"{purpose.upper()}_DATABASE_URL")
        if not server_url:
            server_url, stop = start_postgres(DATA / f"{purpose}-pg")
            stops.append(stop)
        redis_url = os.environ.get(f"{purpose.upper()}_REDIS_URL")
        if not redis_url:
            redis_url, stop = start_valkey(DATA / f"{purpose}-valkey")
            stops.append(stop)
        database_url, drop = new_database(server_url, f"twofold_{purpose}_{os.getpid()}")
        stops.append(drop)
        self.database_url, self.redis_url = database_url, redis_url

    def stop(self) -> None:
        for stop in reversed(self.stops):
            stop()


@dataclass
class Service:
    """One `python -m app serve` with its own port and log file."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, backends: Backends, name: str, **env: str) -> Service:
        port = free_port()
        log_path = DATA / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        environment = {
            **os.environ,
            "ENV_FILE": "/dev/null",
            "DATABASE_URL": backends.database_url,
            "REDIS_URL": backends.redis_url,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WORKERS": "2",
            "KEYS": KEYS,
            "LOG_LEVEL": "warning",
            "EXPIRY_SWEEP_INTERVAL_S": "0.2",
            **env,
        }
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                cwd=ROOT,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service = cls(f"http://127.0.0.1:{port}", process, log_path)
        service.wait_ready()
        return service

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the service did not start:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole service, as a crash would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
