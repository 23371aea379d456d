"""`make bench-import`: `twofold import` of a large export file, its rate and its memory.

Writes an export-format file of IMPORT_TRANSFERS (100,000) completed transfers: one
credit from `@world` to each of 10,000 accounts, then transfers of 1 between random
accounts, each a millisecond after the one before (IMPORT_BATCH sets `--batch`). Starts
the service (2 workers) on embedded PostgreSQL and Valkey (or IMPORT_DATABASE_URL /
IMPORT_REDIS_URL), imports the file with the `twofold` command and prints transfers a
second, the command's CPU and its peak memory (maximum resident set, from the kernel),
and the service's and PostgreSQL's CPU a transfer. A second run of the command on the
same file is timed too: it finds everything recorded by bisection.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import cpu_by_component  # noqa: E402
from integration_tests.server import DATA, Backends, Service  # noqa: E402

TRANSFERS = int(os.environ.get("IMPORT_TRANSFERS", "100000"))
BATCH = os.environ.get("IMPORT_BATCH")  # `--batch`: transactions a request, at most
ACCOUNTS = 10_000
START = datetime(2026, 1, 1, tzinfo=UTC)


def write_file(path: Path) -> None:
    rng = random.Random(1)
    with path.open("w") as out:
        for i in range(TRANSFERS):
            if i < ACCOUNTS:
                lines = [("@world", "-1000000"), (f"a{i}", "1000000")]
            else:
                a, b = rng.sample(range(ACCOUNTS), 2)
                lines = [(f"a{a}", "-1"), (f"a{b}", "1")]
            at = (START + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z")
            transaction = {
                "id": f"t{i}", "status": "COMPLETED", "data": {}, "timestamp": at,
                "expires_at": None, "created_at": at,
                "lines": [{"account": a, "currency": "USD", "amount": x} for a, x in lines],
            }  # fmt: skip
            out.write(json.dumps({"transaction": transaction}, separators=(",", ":")) + "\n")


def run_import(path: Path, service: Service) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds and the command's last lines."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "app", "import", str(path), "--url", service.base_url,
         "--api-key", "abc:123", *(("--batch", BATCH) if BATCH else ())],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert done.returncode == 0, done.stdout + done.stderr
    return wall, cpu, " / ".join(done.stdout.splitlines())


def main() -> None:
    path = DATA / "import-bench.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path)
    backends = Backends.start("import")
    try:
        service = Service.start(backends, "import-bench")
        try:
            service.wait_ready()
            before = cpu_by_component()
            wall, cpu, said = run_import(path, service)
            used = {k: (v - before[k]) / TRANSFERS * 1e6 for k, v in cpu_by_component().items()}
            peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"import of {TRANSFERS} transfers: {TRANSFERS / wall:.0f}/s ({wall:.1f} s);"
                  f" CPU us a transfer: the command {cpu / TRANSFERS * 1e6:.0f} (peak"
                  f" {peak_mib:.0f} MiB resident), the service {used['service']:.0f},"
                  f" PostgreSQL {used['postgres']:.0f}; {said}")  # fmt: skip
            wall, _, said = run_import(path, service)
            print(f"the same file again: {wall:.1f} s ({said})")
        finally:
            service.stop()
    finally:
        backends.stop()


if __name__ == "__main__":
    main()
