"""`handwork-payments`: serve, worker, db upgrade, ledger verify, audit seal|verify,
crypto rotate, reconcile, create-admin."""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from pydantic import ValidationError

from handwork_payments.logs import JsonFormatter
from handwork_payments.logs import configure as configure_logging
from handwork_payments.settings import get_settings

if TYPE_CHECKING:
    from handwork_payments.db import Sessions
    from handwork_payments.runtime import Runtime

__all__ = ["JsonFormatter", "app", "main"]

T = TypeVar("T")

app = typer.Typer(help="Handwork Payments: escrow payments for services marketplaces.")
db_app = typer.Typer(help="Database schema.")
ledger_app = typer.Typer(help="The double-entry ledger.")
payouts_app = typer.Typer(help="Worker payouts.")
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")
audit_app = typer.Typer(help="The hash-chained audit trail.")
crypto_app = typer.Typer(help="Encryption keys of stored secrets.")
app.add_typer(audit_app, name="audit")
app.add_typer(crypto_app, name="crypto")
app.add_typer(payouts_app, name="payouts")


def _deployable() -> None:
    """Production's refusals as one line and a non-zero exit, before anything starts."""
    from handwork_payments.startup import StartupRefused, check_deployable

    try:
        check_deployable(get_settings())
    except ValidationError as exc:
        wrong = "; ".join(
            f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        typer.echo(f"invalid settings: {wrong}", err=True)
        raise typer.Exit(code=2) from None
    except StartupRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from None


def _logging() -> None:
    configure_logging()


def _metrics_folder() -> None:
    """prometheus-client's multiprocess mode for every process `serve` starts (one or
    several), set before anything imports prometheus-client (see http/metrics.py)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        folder = tempfile.mkdtemp(prefix="handwork-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        atexit.register(shutil.rmtree, folder, True)


def _exit_on_sigterm(signum: int, _: Any) -> None:
    sys.exit(0)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind"),
    port: int = typer.Option(8000, help="Port to bind"),
    no_worker: bool = typer.Option(False, "--no-worker", help="Run no in-process worker"),
    workers: int = typer.Option(
        os.cpu_count() or 1, "--workers", min=1, max=64, help="API processes (default: cores)"
    ),
) -> None:
    """Run the API in `workers` processes (one per core by default), and one in-process
    background worker in one of them unless --no-worker."""
    import uvicorn
    from cryptography.fernet import Fernet

    from handwork_payments import startup
    from handwork_payments.db import database_url

    _deployable()
    _logging()
    _metrics_folder()
    settings = get_settings()
    # One database for every process: an embedded PostgreSQL is started here, once, and
    # the children (spawned: they inherit the environment, not this process's state) are
    # handed its URL, so none of them starts or stops one of its own.
    url = database_url(settings)
    os.environ["DATABASE_URL"] = url
    print(startup.banner(settings, url, host, port), flush=True)
    # Secrets generated for development are generated here, once, for every process:
    # generated in each, one process would refuse the tokens another signed.
    if not settings.jwt_secret:
        os.environ["JWT_SECRET"] = secrets.token_urlsafe(32)
    if not settings.metadata_encryption_keys:
        os.environ["METADATA_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    # Spawned children read this, not the parent's globals: none, or one of them.
    os.environ[startup.IN_PROCESS_WORKER_ENV] = "none" if no_worker else "elected"
    # uvicorn shuts down gracefully on SIGTERM, then raises it again with the handler it
    # found: exit through atexit (the embedded PostgreSQL is stopped, the metrics folder
    # removed) rather than die by the signal.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # No `server: uvicorn` banner: it tells an attacker which version's bugs to try.
    uvicorn.run(
        "handwork_payments.app:create_served_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        server_header=False,
    )


@app.command()
def worker(
    concurrency: int = typer.Option(4, min=1, max=100, help="Jobs run at once by this process"),
    name: str = typer.Option("worker", help="Name in the logs"),
) -> None:
    """Run a background worker process (as many as needed, on any hosts, one database).
    SIGTERM: running jobs finish (WORKER_SHUTDOWN_GRACE_SECONDS), then it exits."""
    from handwork_payments import startup
    from handwork_payments.worker import run_forever

    _deployable()

    async def run() -> None:
        async with startup.started_runtime() as current:
            await run_forever(current, concurrency, name)

    _logging()
    startup.run_in_process_worker = False
    asyncio.run(run())


@app.command()
def reconcile(
    since_days: float | None = typer.Option(
        None,
        "--since-days",
        min=0,
        help="Only settled objects changed in the last N days (escrow is always checked)",
    ),
    record_alerts: bool = typer.Option(
        False, "--alert", help="Also record each difference as an alert"
    ),
    statements: bool = typer.Option(
        False,
        "--statements",
        help="Match the providers' statements (Stripe balance transactions, PayPal "
        "Transaction Search) line by line against our books instead (--since-days: 1 unset)",
    ),
) -> None:
    """Compare our held, captured, refunded and paid-out amounts with what Stripe and
    PayPal report, object by object; print every difference, non-zero exit if any."""
    from datetime import timedelta

    if statements:
        _reconcile_statements(since_days if since_days is not None else 1.0, record_alerts)
        return

    from handwork_payments.reconcile import service

    async def run(runtime: Runtime) -> service.Result:
        moment = datetime.now(UTC)
        since = moment - timedelta(days=since_days) if since_days is not None else None
        result = await service.reconcile(runtime, now=moment, since=since)
        if record_alerts:
            await service.alert_differences(runtime, result)
        return result

    result = _with_runtime(run)
    _report_differences(
        result.differences or [],
        f"reconciled {result.payments_checked} payments and {result.payouts_checked} payouts",
    )


def _reconcile_statements(since_days: float, record_alerts: bool) -> None:
    from datetime import timedelta

    from handwork_payments.reconcile import statements

    async def run(runtime: Runtime) -> statements.StatementResult:
        moment = datetime.now(UTC)
        since = moment - timedelta(days=since_days)
        result = await statements.reconcile_statements(runtime, now=moment, since=since)
        if record_alerts:
            await statements.alert_statement_differences(runtime, result)
        return result

    result = _with_runtime(run)
    _report_differences(
        result.differences or [],
        f"matched {result.lines_checked} statement lines and {result.objects_checked} objects "
        "of ours",
    )


def _report_differences(differences: Sequence[object], checked: str) -> None:
    """One line per difference, then what was checked; a non-zero exit if any differ."""
    for difference in differences:
        typer.echo(f"DIFFERENCE {difference}")
    typer.echo(f"{checked}: {len(differences)} differences")
    if differences:
        raise typer.Exit(code=1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations to DATABASE_URL (or the embedded database)."""
    from handwork_payments import migrate
    from handwork_payments.db import database_url

    _logging()
    migrate.upgrade(database_url(get_settings()))


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Check every ledger invariant over the whole database; non-zero exit on a failure."""
    from handwork_payments.ledger.verify import CHECKS, verify

    async def run(sessions: Sessions) -> list[str]:
        async with sessions() as session:
            return await verify(session)

    problems = _with_sessions(run)
    for problem in problems:
        typer.echo(f"BROKEN {problem}", err=True)
    if problems:
        raise typer.Exit(code=1)
    typer.echo(f"ledger ok: {len(CHECKS)} invariants hold")


@audit_app.command("seal")
def audit_seal() -> None:
    """Seal the audit rows written since the last seal into the chain."""
    from handwork_payments.audit.chain import seal

    typer.echo(f"sealed {_with_sessions(seal)} audit rows")


@audit_app.command("verify")
def audit_verify(
    seal_first: bool = typer.Option(False, "--seal", help="Seal unsealed rows first"),
) -> None:
    """Walk the audit chain; non-zero exit naming the first row that does not match."""
    from handwork_payments.audit.chain import Verdict, seal, verify

    async def run(sessions: Sessions) -> Verdict:
        if seal_first:
            await seal(sessions)
        async with sessions() as session:
            return await verify(session)

    verdict = _with_sessions(run)
    for problem in verdict.problems:
        typer.echo(f"BROKEN {problem}", err=True)
    if verdict.problems:
        raise typer.Exit(code=1)
    typer.echo(f"audit chain ok: {verdict.sealed} rows sealed, {verdict.unsealed} not sealed yet")


@crypto_app.command("rotate")
def crypto_rotate(
    batch: int = typer.Option(500, min=1, max=10000, help="Rows re-encrypted per transaction"),
) -> None:
    """Re-encrypt every stored secret with the newest key of METADATA_ENCRYPTION_KEYS, in
    batches (resumable, safe while the service runs); then older keys can be removed."""
    from handwork_payments.privacy.rotation import rotate

    async def run(runtime: Runtime) -> dict[str, int]:
        return await rotate(runtime, batch=batch)

    for column, count in _with_runtime(run).items():
        typer.echo(f"{column}: {count} re-encrypted")


@app.command("create-admin")
def create_admin(
    email: str = typer.Option(..., help="The admin's email"),
    password: str = typer.Option(..., prompt=True, hide_input=True, help="At least 8 characters"),
    full_name: str = typer.Option("Administrator"),
) -> None:
    """Create an admin user (admins are never self-registered)."""
    from handwork_payments import migrate
    from handwork_payments.auth.service import ensure_admin
    from handwork_payments.db import database_url
    from handwork_payments.runtime import Runtime

    if len(password) < 8:
        typer.echo("password must be at least 8 characters", err=True)
        raise typer.Exit(code=2)

    async def run() -> bool:
        settings = get_settings()
        url = database_url(settings)
        await asyncio.to_thread(migrate.upgrade, url)
        runtime = Runtime.build(settings, url)
        try:
            return await ensure_admin(runtime, email=email, password=password, full_name=full_name)
        finally:
            await runtime.aclose()

    created = asyncio.run(run())
    typer.echo(f"admin {email} created" if created else f"a user {email} exists already")


@payouts_app.command("decide")
def payouts_decide(
    payout_id: int = typer.Argument(..., help="A payout held for an admin (GET /admin/alerts)"),
    decision: str = typer.Argument(..., help="fail | complete | send"),
    reason: str = typer.Option(..., help="Why (kept in the audit log and the payout)"),
) -> None:
    """Decide a held payout: `fail` (not paid: the amount back to the worker), `complete`
    (paid at the provider, seen by you) or `send` (clear the hold and send it)."""
    from typing import cast

    from handwork_payments.payouts.decisions import Decision, decide

    if decision not in ("fail", "complete", "send"):
        typer.echo("decision must be fail, complete or send", err=True)
        raise typer.Exit(code=2)

    async def run(runtime: Runtime) -> str:
        payout = await decide(runtime, payout_id, cast(Decision, decision), reason, actor_id=None)
        return str(payout.status)

    typer.echo(f"payout {payout_id}: {_with_runtime(run)}")


def _with_runtime(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run one command's `work` on a runtime of the configured database, closed after."""
    from handwork_payments.db import database_url
    from handwork_payments.runtime import Runtime

    async def run() -> T:
        settings = get_settings()
        runtime = Runtime.build(settings, database_url(settings))
        try:
            return await work(runtime)
        finally:
            await runtime.aclose()

    return asyncio.run(run())


def _with_sessions(work: Callable[[Sessions], Awaitable[T]]) -> T:
    """Run `work` on sessions of the configured database over one connection: the
    offline checks need no runtime (no providers, no worker)."""
    from handwork_payments.db import database_url, make_engine, make_sessions

    async def run() -> T:
        engine = make_engine(database_url(get_settings()), pool_size=1)
        try:
            return await work(make_sessions(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
