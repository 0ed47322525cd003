"""`handwork-payments`: serve, worker, db upgrade, ledger verify, reconcile, create-admin."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime

import typer
from pydantic import ValidationError

from handwork_payments.logs import JsonFormatter
from handwork_payments.logs import configure as configure_logging
from handwork_payments.settings import get_settings

__all__ = ["JsonFormatter", "app", "main"]

app = typer.Typer(help="Handwork Payments: escrow payments for services marketplaces.")
db_app = typer.Typer(help="Database schema.")
ledger_app = typer.Typer(help="The double-entry ledger.")
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")


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

    from handwork_payments import startup

    _deployable()
    _logging()
    # Spawned children read this, not the parent's globals: none, or one of them.
    os.environ[startup.IN_PROCESS_WORKER_ENV] = "none" if no_worker else "elected"
    # No `server: uvicorn` banner: it tells an attacker which version's bugs to try.
    uvicorn.run(
        "handwork_payments.app:create_served_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
        access_log=get_settings().access_log,
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
) -> None:
    """Compare our held, captured, refunded and paid-out amounts with what Stripe and
    PayPal report, object by object; print every difference, non-zero exit if any."""
    from datetime import timedelta

    from handwork_payments.db import database_url
    from handwork_payments.reconcile import service
    from handwork_payments.runtime import Runtime

    async def run() -> service.Result:
        settings = get_settings()
        runtime = Runtime.build(settings, database_url(settings))
        try:
            moment = datetime.now(UTC)
            since = moment - timedelta(days=since_days) if since_days is not None else None
            result = await service.reconcile(runtime, now=moment, since=since)
            if record_alerts:
                await service.alert_differences(runtime, result)
            return result
        finally:
            await runtime.aclose()

    result = asyncio.run(run())
    for difference in result.differences or ():
        typer.echo(f"DIFFERENCE {difference}")
    typer.echo(
        f"reconciled {result.payments_checked} payments and {result.payouts_checked} payouts: "
        f"{len(result.differences or ())} differences"
    )
    if not result.clean:
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
    from handwork_payments.db import database_url, make_engine, make_sessions
    from handwork_payments.ledger.verify import CHECKS, verify

    async def run() -> list[str]:
        engine = make_engine(database_url(get_settings()), pool_size=1)
        try:
            async with make_sessions(engine)() as session:
                return await verify(session)
        finally:
            await engine.dispose()

    problems = asyncio.run(run())
    for problem in problems:
        typer.echo(f"BROKEN {problem}", err=True)
    if problems:
        raise typer.Exit(code=1)
    typer.echo(f"ledger ok: {len(CHECKS)} invariants hold")


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


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
