"""`twofold serve`: start what is missing, migrate, serve with WORKERS processes."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from app.embedded import die_with_parent, prepare, stop_all
from app.settings import environment, local_address

# How long a stop signal is left to granian alone before it is forwarded.
SIGNAL_GRACE_S = 1.0
ANNOUNCE_WITHIN_S = 120.0
log = logging.getLogger("twofold")


def _announce(host: str, port: str, server: subprocess.Popen[bytes]) -> None:
    """Say where the service answers, once it does."""
    near, number, url = local_address(host, port)
    deadline = time.monotonic() + ANNOUNCE_WITHIN_S
    while time.monotonic() < deadline and server.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((near, number), 0.5):
            log.warning("serving %s (the console at %s/console); Ctrl-C stops", url, url)
            return
        time.sleep(0.1)


def serve() -> int:
    env = environment()
    stops = prepare(env)
    # Each worker writes its metrics here; /metrics sums them (prometheus multiprocess).
    metrics_dir = Path(env.get("DATA_DIR", ".data")).resolve() / f"metrics-{os.getpid()}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    command = [
        sys.executable, "-m", "granian",
        "--interface", "asgi",
        "--factory",
        "--host", env.get("HOST", "127.0.0.1"),
        "--port", env.get("PORT", "8910"),
        "--workers", env.get("WORKERS", "2"),
        "--log-level", env.get("LOG_LEVEL", "info").lower(),
        "--no-ws",
        # A worker that does not finish its shutdown in time is killed: a stop never hangs.
        "--workers-kill-timeout", "10",
        # NOTE: asyncpg's round trips cost much less client CPU on uvloop than on
        # asyncio's loop here.
        "--loop", "uvloop",
        "app.main:create_app",
    ]  # fmt: skip
    # NOTE: the server dies with this process (SIGTERM), and the embedded servers with
    # it, however it ends: nothing of `make run` outlives it.
    server = subprocess.Popen(  # noqa: S603 - our own fixed argv
        command, env=env, preexec_fn=die_with_parent(signal.SIGTERM)
    )

    def stop_server() -> None:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)

    def forward(_: int, __: FrameType | None) -> None:
        # NOTE: a Ctrl-C (or a stop of the whole process group) reaches granian too, and
        # a second signal landing inside granian's own handler deadlocked it (seen in
        # CI: the handler re-entered a lock it held). So granian first gets a moment to
        # stop on a signal it may have had already, then a SIGTERM if it still runs.
        timer = threading.Timer(SIGNAL_GRACE_S, stop_server)
        timer.daemon = True
        timer.start()

    announce = threading.Thread(
        target=_announce, args=(env.get("HOST", "127.0.0.1"), env.get("PORT", "8910"), server),
        daemon=True,
    )  # fmt: skip
    announce.start()
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        return server.wait()
    finally:
        stop_all(stops)
        shutil.rmtree(metrics_dir, ignore_errors=True)
