"""The load generator: wrk (C, its own process), with Lua scripts for the POST flows.
Installed from the Debian package when missing (said on the output); when that fails the
bench stops and says so: a load generator in Python would measure itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).parent / "lua"
_REPORT = re.compile(
    r"BENCH requests=(\d+) seconds=([\d.]+) p50_us=(\d+) p99_us=(\d+) errors=(\d+) non2xx=(\d+)"
)


@dataclass(frozen=True)
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors and timeouts
    non2xx: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_binary() -> str:
    """wrk's path, installing the Debian package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: apt-get install -y wrk", flush=True)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("FALLBACK NEEDED: wrk could not be installed; the bench needs a C load generator")
    return found


def script(*parts: str, header: str = "") -> str:
    """One Lua file: `header` (literal Lua), the named scripts, then the report."""
    text = header + "\n".join((LUA / p).read_text() for p in (*parts, "report.lua"))
    handle, path = tempfile.mkstemp(prefix="bench-", suffix=".lua")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    return path


def get_script(token: str | None) -> str:
    header = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    return script(header=header)


def run(
    url: str,
    lua: str,
    *,
    connections: int,
    seconds: float,
    env: dict[str, str] | None = None,
    one_thread_per_connection: bool = False,
) -> Load:
    """wrk against `url` for `seconds`; the flows' scripts keep per-connection state in
    their thread, so they get one thread per connection."""
    threads = connections if one_thread_per_connection else min(connections, 2)
    out = subprocess.run(
        [
            wrk_binary(),
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            lua,
            url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    found = _REPORT.search(out.stdout)
    assert found, out.stdout + out.stderr
    requests, secs, p50, p99, errors, non2xx = found.groups()
    return Load(
        int(requests), float(secs), int(p50) / 1000, int(p99) / 1000, int(errors), int(non2xx)
    )
