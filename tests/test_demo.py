"""`make demo` stops its embedded PostgreSQL on every way out: a normal end (the story
told), an error, Ctrl-C or SIGTERM while it serves (`--serve`). Before, pgserver stopped
it at exit, after the temporary data folder was gone, and could not: every run left one
more server behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo_payments.py"


def _start(**env: str) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environment.pop("DEMO_DATABASE_URL", None)
    return subprocess.Popen(
        [sys.executable, str(DEMO), "--serve"],
        env={**environment, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def _read_until(demo: subprocess.Popen[str], marker: str, timeout: float = 240) -> list[str]:
    assert demo.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    demo.kill()
    raise AssertionError(f"{marker!r} never came:\n{''.join(lines)}")


def _postgres_of(lines: list[str]) -> tuple[Path, psutil.Process]:
    data = Path(next(x for x in lines if x.startswith("database:")).split(" in ")[-1].strip())
    pid = int((data / "postmaster.pid").read_text().splitlines()[0])
    return data, psutil.Process(pid)


def _gone(server: psutil.Process) -> bool:
    try:
        return server.wait(timeout=10) is not None or not server.is_running()
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_stopping_a_serving_demo_stops_its_database(how: signal.Signals) -> None:
    demo = _start()
    try:
        lines = _read_until(demo, "database:")
        data, server = _postgres_of(lines)
        lines += _read_until(demo, "Serving until Ctrl-C")
        text = "".join(lines)
        assert "Dashboard: http://127.0.0.1:" in text and "/dashboard" in text
        assert "Admin: admin@handwork.example / demo-password-123" in text
        demo.send_signal(how)
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
    assert _gone(server), "the demo's PostgreSQL is still running"
    assert not data.exists()


def test_a_demo_that_fails_stops_its_database() -> None:
    # An invalid setting read by the demo after its database started.
    demo = _start(PLATFORM_FEE_PERCENTAGE="lots")
    try:
        lines = _read_until(demo, "database:")
        data, server = _postgres_of(lines)
        assert demo.wait(timeout=120) != 0
    finally:
        if demo.poll() is None:
            demo.kill()
    assert _gone(server), "the demo's PostgreSQL is still running"
    assert not data.exists()
