"""What a person sees when starting `serve`: a short banner (where it listens, the
dashboard, the docs, the database without its password, each provider's mode, a warning
per generated secret), then only warnings unless LOG_LEVEL=info."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from handwork_payments.startup import banner
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]


async def test_the_banner_hides_the_database_password_and_names_generated_secrets() -> None:
    url = "postgresql://payments:s3cret-pw@db.internal:5432/handwork"
    text = banner(
        make_settings(url, jwt_secret=None, metadata_encryption_keys=None), url, "127.0.0.1", 8000
    )
    assert "s3cret-pw" not in text
    assert text.splitlines()[:6] == [
        "Handwork Payments on http://127.0.0.1:8000",
        "  dashboard  http://127.0.0.1:8000/dashboard",
        "  API docs   http://127.0.0.1:8000/docs",
        "  metrics    http://127.0.0.1:8000/metrics",
        "  database   postgresql://payments:***@db.internal:5432/handwork",
        "  providers  stripe simulated, paypal simulated",
    ]
    warnings = [line for line in text.splitlines() if "WARNING" in line]
    assert [w.split()[1] for w in warnings] == ["JWT_SECRET", "METADATA_ENCRYPTION_KEYS"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serve_prints_the_banner_and_then_only_warnings(database_url: str) -> None:
    port = _port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "JWT_SECRET": "first-minute-secret-0123456789abcdef",
        "METADATA_ENCRYPTION_KEYS": "qEo2oYw0Ff7p3TzN2x0b1m3a9Y7tV4Xk8cQ5rW6uJ1s=",
        "WORKER_POLL_SECONDS": "0.2",
    }
    env.pop("LOG_LEVEL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "handwork_payments.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        # Requests, and a few seconds of periodic jobs, say nothing at the warning level.
        for _ in range(3):
            httpx.get(f"http://127.0.0.1:{port}/api/v1/payments/1")
        time.sleep(3)
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    lines = output.strip().splitlines()
    assert lines[0] == f"Handwork Payments on http://127.0.0.1:{port}", output
    assert lines[4].startswith("  database   postgresql://"), output
    assert lines[-1] == "Only warnings from now on (LOG_LEVEL=info for more).", output
    assert len(lines) == 7, output


def test_processes_of_one_serve_share_its_generated_secrets(database_url: str) -> None:
    """`serve --workers 2` with no JWT_SECRET: the key is generated once, by `serve`, for
    both processes (each making its own, one would refuse the tokens the other signed)."""
    port = _port()
    # The database is this pytest process's, shared by every module it runs: registrations
    # other modules made from 127.0.0.1 must not count against this one's.
    env = {**os.environ, "DATABASE_URL": database_url, "REGISTRATIONS_PER_IP_PER_HOUR": "100000"}
    for name in ("JWT_SECRET", "METADATA_ENCRYPTION_KEYS", "LOG_LEVEL"):
        env.pop(name, None)
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "handwork_payments.cli", "serve"),
            *("--workers", "2", "--no-worker", "--port", str(port)),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        email = f"twoprocs-{port}@example.com"
        r = httpx.post(
            f"{base}/api/v1/auth/register",
            json={"email": email, "password": "correct horse battery", "full_name": "T"}
            | {"role": "client"},
        )
        assert r.status_code == 201, r.text
        token = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": email, "password": "correct horse battery"},
        ).json()["access_token"]
        # A new connection each time: the two processes take turns accepting them.
        answers = [
            httpx.get(f"{base}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
            for _ in range(20)
        ]
        assert [a.status_code for a in answers] == [200] * 20
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
