"""The API as its own processes (`handwork-payments serve --workers N --no-worker`), its
memory, and `handwork-payments ledger verify` on its database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
START_SECONDS = 90


def environment(database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "JWT_SECRET": "bench-jwt-secret-0123456789abcdef",
        "METADATA_ENCRYPTION_KEYS": "qEo2oYw0Ff7p3TzN2x0b1m3a9Y7tV4Xk8cQ5rW6uJ1s=",
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "1024",
        "REGISTRATIONS_PER_IP_PER_HOUR": "100000",
        "LOGIN_MAX_ATTEMPTS_PER_IP_PER_MINUTE": "100000",
        "STRIPE_SECRET_KEY": "",
        "PAYPAL_CLIENT_ID": "",
        "PAYPAL_CLIENT_SECRET": "",
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(env: dict[str, str], workers: int, log: Path) -> Iterator[tuple[str, int]]:
    """`serve --workers N --no-worker` on a free port; yields its base URL and pid."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(BIN / "handwork-payments"),
                "serve",
                "--no-worker",
                "--workers",
                str(workers),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, base, workers, log)
        yield base, process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_ready(process: subprocess.Popen[bytes], base: str, workers: int, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/health", timeout=2).status_code == 200 and (
                len(api_processes(process.pid)) >= workers
            ):
                # Every child answers: a few more checks reach each of them.
                for _ in range(4 * workers):
                    httpx.get(f"{base}/health", timeout=5)
                return
        time.sleep(0.2)
    raise RuntimeError(f"serve did not start:\n{log.read_text(errors='replace')[-3000:]}")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(c) for c in task.read_text().split()]
    return found


def api_processes(pid: int) -> list[int]:
    """The processes that answer requests: the children uvicorn spawned (not its
    multiprocessing helpers), or the one process itself with --workers 1."""
    children = [c for c in _children(pid) if b"from multiprocessing.spawn" in _cmdline(c)]
    return children or [pid]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ledger_verify(env: dict[str, str]) -> str:
    """`ledger verify`'s checks (the command's function, in this process: a process per
    phase would cost more than a short phase), one line."""
    from handwork_payments.db import make_engine, make_sessions
    from handwork_payments.ledger.verify import CHECKS, verify

    async def run() -> list[str]:
        engine = make_engine(env["DATABASE_URL"], pool_size=1)
        try:
            async with make_sessions(engine)() as session:
                return await verify(session)
        finally:
            await engine.dispose()

    problems = asyncio.run(run())
    return f"BROKEN: {'; '.join(problems)}" if problems else f"ok, {len(CHECKS)} invariants hold"
