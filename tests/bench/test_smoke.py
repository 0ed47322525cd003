"""`make bench` cannot rot: its HTTP bench runs end to end in seconds (one API process,
two connections, one-second wrk runs, a tiny ledger growth, a small pgbench scale) and
writes its report and plot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_bench_runs_end_to_end(tmp_path: Path) -> None:
    env = {
        "BENCH_SECONDS": "1",
        "BENCH_CONNECTIONS": "2",
        "BENCH_SWEEP": "1,2",
        "BENCH_PROCESSES": "1",
        "BENCH_LEDGER_ROWS": "200",
        "BENCH_SLOW_MS": "20",
        "BENCH_SLOW_CONNECTIONS": "2",
        "BENCH_PGBENCH_SCALE": "1",
        "BENCH_DB_POOL_SIZE": "2",
        "BENCH_RESULTS": str(tmp_path),
    }
    out = _run("bench.api", env, timeout=600)
    figures = ("TPC-B", "escrow flows", "refund flows", "payout requests", "slow provider")
    for figure in (*figures, "what bounds the money targets", "Little's law"):
        assert figure in out, figure
    assert "BROKEN" not in out, out[-4000:]
    assert "non-2xx" not in out, out[-4000:]
    assert "POST /payments/stripe/payment-intent (card hold)" in out
    assert (tmp_path / "api-connections.png").stat().st_size > 1000
    assert list(tmp_path.glob("api-*.txt"))


@pytest.mark.slow
def test_the_jobs_bench_runs_end_to_end() -> None:
    """`bench.jobs` rotted once unseen (a service's signature changed under it): it runs
    here with a handful of jobs, and its figures and verdict must be printed."""
    out = _run("bench.jobs", {"BENCH_JOBS": "10", "BENCH_JOB_SAMPLES": "2"}, timeout=300)
    assert "send_payout (Stripe simulator)" in out, out[-4000:]
    assert "deliver_event (receiver process)" in out, out[-4000:]
    assert "ledger invariants after the run: all hold" in out, out[-4000:]


def _run(module: str, env: dict[str, str], *, timeout: float) -> str:
    """`python -m <module>` with `env` on top of ours; its output, once it exited 0."""
    done = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    return out
