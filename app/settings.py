"""One typed settings object, read from the environment (and `.env` in development)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import msgspec

from app.ledger.documents import Limits


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    public_key: str
    secret_key_hash: bytes


class _KeyEntry(msgspec.Struct, rename="kebab"):
    name: str
    public_key: str
    secret_key_hash: str
    email: str | None = None


def parse_keys(text: str) -> tuple[Tenant, ...]:
    """Parse the `KEYS` JSON list of tenants."""
    if not text.strip():
        return ()
    entries = msgspec.json.decode(text, type=list[_KeyEntry])
    return tuple(Tenant(e.name, e.public_key, bytes.fromhex(e.secret_key_hash)) for e in entries)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def read_env_file(path: Path) -> dict[str, str]:
    """Read KEY=VALUE lines; quotes around a value are stripped, `#` lines skipped."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def environment() -> dict[str, str]:
    """`.env` values overlaid by the real environment (real variables win)."""
    env = read_env_file(Path(os.environ.get("ENV_FILE", ".env")))
    env.update(os.environ)
    return env


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = ""
    redis_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8910
    workers: int = 2
    tenants: tuple[Tenant, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    body_size_max: int = 1024 * 1024
    batch_body_size_max: int = 16 * 1024 * 1024
    db_pool_size: int = 10
    db_pool_overflow: int = 10
    db_statement_timeout_ms: int = 10_000
    db_acquire_timeout_s: float = 10.0
    redis_timeout_s: float = 2.0
    idempotency_ttl_s: int = 24 * 3600
    idempotency_in_flight_ttl_s: int = 60
    expiry_sweep_interval_s: float = 1.0
    batch_size_max: int = 256
    batch_wait_ms: float = 1.0
    timestamp_skew_s: float = 5.0
    signature_max_age_s: int = 300
    json_depth_max: int = 64
    write_queue_max: int = 65_536
    rate_limit_per_s: float = 0.0
    rate_limit_burst: int = 0
    sink_hosts: tuple[str, ...] = ()
    sink_retry_max_s: float = 60.0
    sink_lease_s: float = 15.0
    sink_poll_s: float = 0.25
    fast_path: bool = True
    data_dir: str = ".data"
    log_level: str = "info"

    @property
    def limits(self) -> Limits:
        return Limits(timedelta(seconds=self.timestamp_skew_s), self.json_depth_max)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = environment() if env is None else env
        origins = tuple(o.strip() for o in e.get("ALLOWED_ORIGINS", "").split(",") if o.strip())
        return cls(
            database_url=e.get("DATABASE_URL", ""),
            redis_url=e.get("REDIS_URL", ""),
            host=e.get("HOST", "127.0.0.1"),
            port=int(e.get("PORT", "8910")),
            workers=int(e.get("WORKERS", "2")),
            tenants=parse_keys(e.get("KEYS", "")),
            allowed_origins=origins,
            body_size_max=int(e.get("BODY_SIZE_MAX", str(1024 * 1024))),
            batch_body_size_max=int(e.get("BATCH_BODY_SIZE_MAX", str(16 * 1024 * 1024))),
            db_pool_size=int(e.get("DB_POOL_SIZE", "10")),
            db_pool_overflow=int(e.get("DB_POOL_OVERFLOW", "10")),
            db_statement_timeout_ms=int(e.get("DB_STATEMENT_TIMEOUT_MS", "10000")),
            db_acquire_timeout_s=float(e.get("DB_ACQUIRE_TIMEOUT_S", "10")),
            redis_timeout_s=float(e.get("REDIS_TIMEOUT_S", "2")),
            idempotency_ttl_s=int(e.get("IDEMPOTENCY_TTL_S", str(24 * 3600))),
            idempotency_in_flight_ttl_s=int(e.get("IDEMPOTENCY_IN_FLIGHT_TTL_S", "60")),
            expiry_sweep_interval_s=float(e.get("EXPIRY_SWEEP_INTERVAL_S", "1")),
            batch_size_max=int(e.get("BATCH_SIZE_MAX", "256")),
            batch_wait_ms=float(e.get("BATCH_WAIT_MS", "1")),
            timestamp_skew_s=float(e.get("TIMESTAMP_SKEW_S", "5")),
            signature_max_age_s=int(e.get("SIGNATURE_MAX_AGE_S", "300")),
            json_depth_max=int(e.get("JSON_DEPTH_MAX", "64")),
            write_queue_max=int(e.get("WRITE_QUEUE_MAX", "65536")),
            rate_limit_per_s=float(e.get("RATE_LIMIT_PER_S", "0")),
            rate_limit_burst=int(e.get("RATE_LIMIT_BURST", "0")),
            sink_hosts=tuple(
                h.strip().lower() for h in e.get("SINK_HOSTS", "").split(",") if h.strip()
            ),
            sink_retry_max_s=float(e.get("SINK_RETRY_MAX_S", "60")),
            sink_lease_s=float(e.get("SINK_LEASE_S", "15")),
            sink_poll_s=float(e.get("SINK_POLL_S", "0.25")),
            fast_path=e.get("FAST_PATH", "1") != "0",
            data_dir=e.get("DATA_DIR", ".data"),
            log_level=e.get("LOG_LEVEL", "info"),
        )


def local_address(host: str, port: int | str) -> tuple[str, int, str]:
    """Where this machine reaches a server bound to `host`:`port`: the host to connect
    to, the port, and the URL (one bound to every interface is reached on loopback)."""
    near = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    shown = f"[{near}]" if ":" in near else near
    return near, int(port), f"http://{shown}:{port}"


def sqlalchemy_url(url: str) -> str:
    """Turn a `postgresql://` URL into the asyncpg dialect's form."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url
