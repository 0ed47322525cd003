"""localstripe (PyPI) as a Stripe peer for tests: started from Python in a child process,
bound to 127.0.0.1 on a free port, with its pickle persistence off, and stopped afterwards.

localstripe's own `start()` listens on every interface (`::`) on a fixed port and reloads
/tmp/localstripe.pickle, which it rewrites after every change; neither is acceptable for
tests running in parallel on a shared machine. So a small bootstrap patches the store's
persistence out, binds 127.0.0.1:0 itself (no race for the port), prints the port, and
serves localstripe's aiohttp app with `run_app`.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

# The secret key localstripe accepts: any `sk_...` longer than five characters.
LOCALSTRIPE_SECRET_KEY = "sk_test_localstripe"
# What it accepts where Stripe.js would send a publishable key (e.g. `_authenticate`).
LOCALSTRIPE_PUBLISHABLE_KEY = "pk_test_localstripe"

START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 5.0

_BOOTSTRAP = r"""
import socket
import sys

from localstripe import resources
from localstripe.errors import UserError

# Persistence off: the store pickles itself to /tmp/localstripe.pickle on every write and
# reloads it at start. A test peer starts empty and leaves nothing behind.
resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None

# localstripe 1.15 refuses `automatic_payment_methods`, which real Stripe needs for wallets
# (Apple Pay, Google Pay) and for server-side confirmation without a return_url. Check its
# shape as Stripe would and drop it: localstripe only has cards anyway.
_create_intent = resources.PaymentIntent._api_create.__func__


def _api_create(cls, automatic_payment_methods=None, **data):
    if automatic_payment_methods is not None:
        apm = automatic_payment_methods
        if (
            type(apm) is not dict
            or resources.try_convert_to_bool(apm.get("enabled")) is not True
            or apm.get("allow_redirects", "always") not in ("always", "never")
            or set(apm) - {"enabled", "allow_redirects"}
        ):
            raise UserError(400, "Bad request")
    return _create_intent(cls, **data)


resources.PaymentIntent._api_create = classmethod(_api_create)

from aiohttp import web  # noqa: E402
from localstripe.server import app  # noqa: E402

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
web.run_app(app, sock=sock, print=None, access_log=None)
"""


@dataclass(frozen=True)
class LocalStripe:
    url: str  # http://127.0.0.1:<port>, to use as STRIPE_API_BASE
    secret_key: str = LOCALSTRIPE_SECRET_KEY
    publishable_key: str = LOCALSTRIPE_PUBLISHABLE_KEY
    pid: int = 0


@contextlib.contextmanager
def running_localstripe(log_path: Path) -> Iterator[LocalStripe]:
    """localstripe in a child process until the block ends; its stderr goes to `log_path`
    (read it when a test fails)."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            port = _read_port(process, log_path)
            url = f"http://127.0.0.1:{port}"
            _wait_until_answering(process, url, log_path)
            yield LocalStripe(url=url, pid=process.pid)
        finally:
            _stop(process)


def _read_port(process: subprocess.Popen[bytes], log_path: Path) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline().strip()
            if line.isdigit():
                return int(line)
            break
    raise RuntimeError(f"localstripe did not start: {_tail(log_path)}")


def _wait_until_answering(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            # Any answer (a 401 without a key included) means the app is serving.
            httpx.get(f"{url}/v1/customers", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"localstripe at {url} does not answer: {_tail(log_path)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
    if process.stdout is not None:
        process.stdout.close()


def _tail(log_path: Path, size: int = 4000) -> str:
    try:
        return log_path.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return "(no log)"


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    """One localstripe for the session (objects get random ids, so tests do not collide)."""
    with running_localstripe(tmp_path_factory.mktemp("localstripe") / "stderr.log") as peer:
        yield peer
