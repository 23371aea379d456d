"""One service per data folder: the embedded servers under `.data/` belong to the
process that started them, and a second start in the same checkout must not touch them.

The process that starts embedded servers holds an exclusive `flock` on
`<data folder>/twofold.lock` for as long as it lives, the lock file naming its pid and
where it serves. The kernel drops the lock when the process dies, however it dies, so a
lock that can be taken means that no live instance owns the folder: any server still
running on it is an orphan and may be stopped. A lock that cannot be taken means a live
instance: the second start is refused, naming it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

LOCK_NAME = "twofold.lock"


class AlreadyRunning(RuntimeError):
    """Another live process owns this data folder's embedded servers."""


def claim(data_dir: Path, serving: str) -> Callable[[], None]:
    """Own `data_dir`'s embedded servers until the returned callable (or the process's
    end) gives them back; `AlreadyRunning` when a live process owns them."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(descriptor, 4096).decode(errors="replace").strip() or "another process"
        os.close(descriptor)
        raise AlreadyRunning(
            f"twofold is already running on {data_dir.resolve()} ({owner}); stop it first, or"
            " give this one its own DATA_DIR (or DATABASE_URL and REDIS_URL) and PORT"
        ) from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"pid {os.getpid()}, {serving}\n".encode())

    def release() -> None:
        with contextlib.suppress(OSError):
            os.close(descriptor)

    return release
