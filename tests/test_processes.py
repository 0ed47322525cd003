"""Real separate processes on one database: `handwork-payments serve --no-worker` and two
`handwork-payments worker` processes, driven over HTTP.

- A worker killed with SIGKILL in the middle of a payout job (the provider has made the
  transfer; its answer is slow) stops sending heartbeats; the other worker's periodic
  `retry_stalled_jobs` puts the job back, and it completes the payout by finding the
  transfer: one transfer, the payout completed once, the ledger sound.
- A worker sent SIGTERM in the middle of a job lets it finish, then exits cleanly.
- The API process runs no job.

The processes run in a scratch directory (no `.env`), bound to 127.0.0.1, each in its own
process group, all killed at the end whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import text

from handwork_payments.db import libpq_url
from handwork_payments.models import PayoutStatus
from handwork_payments.runtime import Runtime
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.faults import earner, payout_row, provider_objects, requested, simulator
from tests.helpers import Api, eventually

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
JWT_SECRET = "test-jwt-secret-0123456789abcdef"  # the test runtime's (conftest.make_settings)
SCRUBBED_PREFIXES = ("STRIPE_", "PAYPAL_", "FIRST_ADMIN_", "DATABASE_URL", "WORKER_")
START_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env.update(
        DATABASE_URL=database_url,
        JWT_SECRET=JWT_SECRET,
        STRIPE_WEBHOOK_SECRET=TEST_WEBHOOK_SECRET,
        METADATA_ENCRYPTION_KEYS="qEo2oYw0Ff7p3TzN2x0b1m3a9Y7tV4Xk8cQ5rW6uJ1s=",
        PASSWORD_HASH_TIME_COST="1",
        PASSWORD_HASH_MEMORY_KIB="1024",
        PYTHONUNBUFFERED="1",
        # The workers' "Starting worker" (procrastinate's) says when they are ready.
        LOG_LEVEL="info",
        # A dead worker is noticed within about 5 s instead of a minute and a half (with
        # room for a live one's heartbeat to be late on a loaded machine).
        WORKER_POLL_SECONDS="0.5",
        WORKER_HEARTBEAT_SECONDS="0.5",
        WORKER_STALLED_SECONDS="4",
        WORKER_STALLED_SWEEP_SECONDS="1",
        WORKER_SHUTDOWN_GRACE_SECONDS="20",
    )
    return env


class Process:
    def __init__(self, name: str, args: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [str(BIN / "handwork-payments"), *args],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.signal(signal.SIGKILL)
        self.popen.wait(timeout=15)


class Cluster:
    def __init__(self, workdir: Path, database_url: str) -> None:
        self.workdir = workdir
        self.env = environment(database_url)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.processes: list[Process] = []
        self.api = self.start(
            "api", ["serve", "--no-worker", "--host", "127.0.0.1", "--port", str(self.port)]
        )
        self.workers = [self.start_worker() for _ in range(2)]

    def start(self, name: str, args: list[str]) -> Process:
        process = Process(name, args, self.workdir, self.env)
        self.processes.append(process)
        return process

    def start_worker(self) -> Process:
        n = sum(p.name.startswith("worker") for p in self.processes) + 1
        return self.start(f"worker{n}", ["worker", "--concurrency", "2", "--name", f"w{n}"])

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        pending = list(self.processes)
        while pending:
            for process in list(pending):
                if process.popen.poll() is not None:
                    raise AssertionError(f"{process.name} exited:\n{process.output()[-3000:]}")
                ready = (
                    _healthy(self.base_url)
                    if process is self.api
                    else "Starting worker" in process.output()
                )
                if ready:
                    pending.remove(process)
            if time.monotonic() > deadline:
                raise AssertionError(f"not started: {[p.name for p in pending]}")
            time.sleep(0.1)

    def started(self, task: str) -> dict[str, int]:
        """How many `task` jobs each worker's log shows it started."""
        return {p.name: p.output().count(f"Starting job {task}") for p in self.workers}

    def running_job(self, task: str, before: dict[str, int]) -> Process | None:
        """The live worker that started a `task` job since `before` (from `started`)."""
        for process in self.workers:
            now_started = process.output().count(f"Starting job {task}")
            if process.popen.poll() is None and now_started > before.get(process.name, 0):
                return process
        return None

    def close(self) -> None:
        """SIGTERM first (workers unregister), SIGKILL what is left; then forget the workers
        that could not unregister (the one this test killed): conftest restarts every
        sequence between tests, so a leftover procrastinate_workers row would collide with
        the next worker to register."""
        for process in self.processes:
            if process.popen.poll() is None:
                process.signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.kill()
        with psycopg.connect(libpq_url(self.env["DATABASE_URL"]), autocommit=True) as conn:
            conn.execute("DELETE FROM procrastinate_workers")


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def cluster(
    runtime: Runtime, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Started for each test, after conftest has emptied the tables: a TRUNCATE ... RESTART
    IDENTITY under running workers would let a job finished late share an id with a new
    one."""
    started = Cluster(tmp_path_factory.mktemp("cluster"), database_url)
    try:
        started.wait_ready()
        yield started
    finally:
        started.close()


@pytest.fixture
async def api(cluster: Cluster, runtime: Runtime) -> AsyncIterator[Api]:
    """The Api helper over real HTTP to the API process (runtime: the same database, for
    admins and for looking at rows)."""
    async with httpx.AsyncClient(base_url=cluster.base_url, timeout=30) as http:
        yield Api(http, runtime)


async def job_of(runtime: Runtime, task: str) -> tuple[str, list[str]]:
    """The latest `task` job's status and its events (deferred, started, ...)."""
    async with runtime.engine.connect() as conn:
        job_id, status = (
            await conn.execute(
                text(
                    "SELECT id, status FROM procrastinate_jobs WHERE task_name = :t "
                    "ORDER BY id DESC LIMIT 1"
                ),
                {"t": task},
            )
        ).one()
        events = await conn.scalars(
            text("SELECT type FROM procrastinate_events WHERE job_id = :id ORDER BY id"),
            {"id": job_id},
        )
        return str(status), [str(e) for e in events]


async def stripe_payout_in_flight(
    api: Api, cluster: Cluster, runtime: Runtime, delay_seconds: float
) -> tuple[int, Process]:
    """A Stripe payout whose transfer the provider has made but answers `delay_seconds`
    late, and the worker waiting for that answer."""
    worker, admin = await earner(api)
    payout = await requested(api, worker, "40.00", "stripe")
    await simulator(runtime).inject_fault("send_payout", "delay", delay_seconds=delay_seconds)
    before = cluster.started("hp:send_payout")
    r = await api.post(f"/payments/payouts/{payout['id']}/process", admin)
    assert r.status_code == 200, r.text

    async def transfer_made() -> Process | None:
        made = await provider_objects(
            runtime, "stripe", "transfer", metadata={"payout_id": str(payout["id"])}
        )
        return cluster.running_job("hp:send_payout", before) if made else None

    claimed = await eventually(transfer_made, timeout_seconds=30)
    assert (await payout_row(runtime, payout["id"])).status == PayoutStatus.PROCESSING
    return int(payout["id"]), claimed


async def test_a_job_of_a_worker_killed_mid_job_is_retried_and_applied_once(
    api: Api, cluster: Cluster, runtime: Runtime
) -> None:
    payout_id, victim = await stripe_payout_in_flight(api, cluster, runtime, delay_seconds=60)
    victim.signal(signal.SIGKILL)
    victim.popen.wait(timeout=10)
    cluster.workers.remove(victim)

    async def completed() -> bool:
        return (await payout_row(runtime, payout_id)).status == PayoutStatus.COMPLETED

    await eventually(completed, timeout_seconds=45)
    payout = await payout_row(runtime, payout_id)
    assert payout.attempts == 2  # the killed call, then the re-query that found it
    transfers = await provider_objects(
        runtime, "stripe", "transfer", metadata={"payout_id": str(payout_id)}
    )
    assert transfers == 1
    status, events = await job_of(runtime, "hp:send_payout")
    assert status == "succeeded" and events.count("started") == 2  # retried once
    survivor = cluster.workers[0]
    assert "was running on a dead worker: retried" in survivor.output()


async def test_sigterm_lets_the_running_job_finish_then_the_worker_exits(
    api: Api, cluster: Cluster, runtime: Runtime
) -> None:
    payout_id, worker = await stripe_payout_in_flight(api, cluster, runtime, delay_seconds=3)
    stopping_at = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = worker.popen.wait(timeout=30)
    took = time.monotonic() - stopping_at
    cluster.workers.remove(worker)
    assert code == 0, worker.output()[-3000:]
    # It waited for the job: the payout was completed by this worker, at the first try.
    payout = await payout_row(runtime, payout_id)
    assert payout.status == PayoutStatus.COMPLETED and payout.attempts == 1
    status, events = await job_of(runtime, "hp:send_payout")
    assert status == "succeeded" and events.count("started") == 1
    assert took < 20
    assert "Stopped worker" in worker.output()
    # The API process never runs jobs.
    assert "Starting job" not in cluster.api.output()
