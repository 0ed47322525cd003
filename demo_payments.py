"""The demo: SPEC.md's four flows told as a story, on a temporary database and the
built-in provider simulators (no keys, no network). Run it with `make demo`.

It starts the real service (HTTP on 127.0.0.1, an in-process background worker) on a
throwaway embedded PostgreSQL, drives it over HTTP as a marketplace would, and prints the
balances and the ledger after each step."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from sqlalchemy import text

from handwork_payments import migrate
from handwork_payments.app import create_app
from handwork_payments.auth.service import ensure_admin
from handwork_payments.db import start_embedded, stop_embedded
from handwork_payments.kit.clock import now
from handwork_payments.ledger.verify import verify
from handwork_payments.recurring.runs import run_due
from handwork_payments.runtime import Runtime
from handwork_payments.settings import Settings
from handwork_payments.worker import running_worker

PASSWORD = "demo-password-123"
# How often the demo runs the recurring job at one due date before it gives up.
RUN_ATTEMPTS = 50


def say(text_: str) -> None:
    print(f"\n== {text_}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Demo:
    def __init__(self, http: httpx.AsyncClient, runtime: Runtime) -> None:
        self.http = http
        self.runtime = runtime

    async def call(self, method: str, path: str, who: dict[str, str] | None, **kw: Any) -> Any:
        r = await self.http.request(method, f"/api/v1{path}", headers=who or {}, **kw)
        if r.status_code >= 400:
            raise SystemExit(f"{method} {path} answered {r.status_code}: {r.text}")
        return r.json()

    async def user(self, email: str, name: str, role: str) -> tuple[int, dict[str, str]]:
        if role == "admin":
            await ensure_admin(self.runtime, email=email, password=PASSWORD, full_name=name)
        else:
            await self.call(
                "POST",
                "/auth/register",
                None,
                json={"email": email, "password": PASSWORD, "full_name": name, "role": role},
            )
        token = await self.call(
            "POST", "/auth/token", None, data={"username": email, "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        me = await self.call("GET", "/auth/me", headers)
        print(f"   {name} <{email}>, role {role} (user #{me['id']})")
        return me["id"], headers

    async def show(self, worker: dict[str, str]) -> None:
        e = await self.call("GET", "/payments/earnings/worker", worker)
        print(
            f"   worker: available {e['available_balance']}, in escrow {e['pending_balance']}, "
            f"paid out {e['total_paid_out']}, payouts pending {e['pending_payouts']}"
        )
        async with self.runtime.sessions() as session:
            rows = (
                await session.execute(
                    text("SELECT code, balance FROM ledger_accounts WHERE balance <> 0 ORDER BY id")
                )
            ).all()
            problems = await verify(session)
        print("   ledger (non-zero accounts, minor units):")
        for code, balance in rows:
            print(f"     {code:<40} {balance:>10}")
        print(f"   ledger invariants: {problems or 'all hold'}")

    async def net_revenue(self) -> None:
        """Per payment: the platform's gross fee, what the provider kept, and the net."""
        say("What the platform earned: gross fee, provider fee, net (minor units)")
        async with self.runtime.sessions() as session:
            rows = (
                await session.execute(
                    text(
                        "SELECT id, payment_method, currency, platform_fee - refunded_fee,"
                        " coalesce(provider_fee, 0) FROM payments ORDER BY id"
                    )
                )
            ).all()
            totals = (
                await session.execute(
                    text(
                        "SELECT currency, kind, sum(balance) FROM ledger_accounts WHERE kind IN"
                        " ('platform_fee_revenue', 'provider_fees', 'platform_losses')"
                        " GROUP BY 1, 2 ORDER BY 1, 2"
                    )
                )
            ).all()
        for payment_id, method, currency, gross, provider_fee in rows:
            print(
                f"   payment #{payment_id} ({method}, {currency}): gross fee {gross:>6}, "
                f"{method} fee {provider_fee:>6}, net {gross - provider_fee:>6}"
            )
        for currency, kind, balance in totals:
            print(f"   ledger {currency} {kind:<22} {balance:>8}")

    async def until(self, path: str, who: dict[str, str], field: str, value: str) -> Any:
        for _ in range(200):
            item = (await self.call("GET", path, who))["items"][0]
            if item[field] == value:
                return item
            await asyncio.sleep(0.05)
        raise SystemExit(f"{path} never reached {field}={value}")


async def story(demo: Demo) -> None:
    say("The people")
    _, admin = await demo.user(ADMIN_EMAIL, "Ada Admin", "admin")
    _, client = await demo.user("carla@example.com", "Carla Client", "client")
    worker_id, worker = await demo.user("wes@example.com", "Wes Worker", "worker")

    say("1. Carla books Wes to fix a sink for 150.00 USD and pays by card (Stripe simulator)")
    booking = await demo.call(
        "POST",
        "/bookings",
        client,
        json={
            "worker_id": worker_id,
            "title": "Fix the sink",
            "amount": "150.00",
            "currency": "USD",
        },
    )
    payment = await demo.call(
        "POST",
        "/payments/stripe/payment-intent",
        client,
        json={
            "booking_id": booking["id"],
            "amount": "150.00",
            "currency": "USD",
            "payment_method": "pm_card_visa",
        },
    )
    print(
        f"   payment #{payment['id']} is {payment['status']} ({payment['stripe_payment_id']}): "
        f"fee {payment['platform_fee']}, worker's share {payment['worker_amount']}, "
        f"authorisation good until {payment['capture_by']}"
    )
    await demo.show(worker)

    say("2. Wes finishes the job; Carla approves and releases the money from escrow")
    await demo.call("POST", f"/bookings/{booking['id']}/complete", worker)
    released = await demo.call("POST", f"/payments/{payment['id']}/release", client)
    print(f"   payment #{released['id']} is {released['status']}: captured and released")
    await demo.show(worker)

    say("3. Wes asks for 100.00 to his Stripe account; Ada processes the payout")
    await demo.call(
        "PUT", "/payments/payout-methods", worker, json={"stripe_account_id": "acct_1WesWorker"}
    )
    payout = await demo.call(
        "POST",
        "/payments/payouts/request",
        worker,
        json={"amount": "100.00", "payment_method": "stripe"},
    )
    print(f"   payout #{payout['id']} is {payout['status']}: 100.00 reserved at once")
    await demo.call("POST", f"/payments/payouts/{payout['id']}/process", admin)
    done = await demo.until("/payments/payouts", worker, "status", "completed")
    print(f"   the background worker sent it: {done['status']} ({done['stripe_transfer_id']})")
    await demo.show(worker)

    say("4. A second job paid with PayPal (simulator), then refunded in part (40.00)")
    booking2 = await demo.call(
        "POST",
        "/bookings",
        client,
        json={
            "worker_id": worker_id,
            "title": "Paint the fence",
            "amount": "80.00",
            "currency": "USD",
        },
    )
    order = await demo.call(
        "POST",
        "/payments/paypal/create",
        client,
        json={
            "booking_id": booking2["id"],
            "amount": "80.00",
            "currency": "USD",
            "return_url": "https://app.example.com/paid",
            "cancel_url": "https://app.example.com/cancelled",
        },
    )
    print(
        f"   PayPal order {order['paypal_payment_id']}: Carla approves at {order['approval_url']}"
    )
    approval = (await demo.http.get(order["approval_url"])).json()
    held = await demo.call(
        "POST",
        "/payments/paypal/execute",
        client,
        json={
            "payment_id": order["paypal_payment_id"],
            "payer_id": approval["payer_id"],
            "booking_id": booking2["id"],
        },
    )
    print(f"   payment #{held['id']} is {held['status']}")
    refunded = await demo.call(
        "POST",
        "/payments/refund",
        worker,
        json={"payment_id": held["id"], "amount": "40.00", "reason": "Only half the fence"},
    )
    print(
        f"   refunded {refunded['refunded_amount']} of {refunded['amount']};"
        f" still {refunded['status']}"
    )
    await demo.call("POST", f"/payments/{held['id']}/release", client)
    print("   Carla releases the rest: Wes gets 38.00 (95% of 40.00), the platform 2.00")
    await demo.show(worker)

    say("5. A third job, paid with Apple Pay, is disputed; Ada resolves it with a split")
    booking3 = await demo.call(
        "POST",
        "/bookings",
        client,
        json={
            "worker_id": worker_id,
            "title": "Tile the bathroom",
            "amount": "200.00",
            "currency": "USD",
        },
    )
    p3 = await demo.call(
        "POST",
        "/payments/stripe/payment-intent",
        client,
        json={
            "booking_id": booking3["id"],
            "amount": "200.00",
            "currency": "USD",
            "payment_method": "pm_card_visa_apple_pay",
        },
    )
    print(f"   payment #{p3['id']} is {p3['status']}, paid through {p3['wallet']}")
    dispute = await demo.call(
        "POST",
        "/payments/disputes",
        client,
        json={
            "payment_id": p3["id"],
            "reason": "Work not completed as agreed",
            "description": "Half the tiles are missing",
        },
    )
    print(f"   dispute #{dispute['id']} is {dispute['status']}; the payment is frozen")
    await demo.call("POST", f"/payments/disputes/{dispute['id']}/review", admin)
    resolved = await demo.call(
        "POST",
        f"/payments/disputes/{dispute['id']}/resolve",
        admin,
        json={
            "outcome": "split",
            "refund_amount": "100.00",
            "resolution_notes": "Half done, half paid",
        },
    )
    print(f"   dispute {resolved['status']}: 100.00 back to Carla, 100.00 released (Wes 95.00)")
    await demo.show(worker)

    await stablecoin_job(demo, client, worker, worker_id)
    say("7. A kitchen in two milestones: one card payment, released part by part")
    booking4 = await demo.call(
        "POST",
        "/bookings",
        client,
        json={
            "worker_id": worker_id,
            "title": "Redo the kitchen",
            "amount": "300.00",
            "currency": "USD",
            "milestones": [
                {"title": "Demolition", "amount": "100.00"},
                {"title": "New cabinets", "amount": "200.00"},
            ],
        },
    )
    p4 = await demo.call(
        "POST",
        "/payments/stripe/payment-intent",
        client,
        json={
            "booking_id": booking4["id"],
            "amount": "300.00",
            "currency": "USD",
            "payment_method": "pm_card_visa",
        },
    )
    for milestone in booking4["milestones"]:
        step = await demo.call(
            "POST",
            f"/payments/{p4['id']}/release",
            client,
            json={"milestone_id": milestone["id"]},
        )
        print(
            f"   Carla releases '{milestone['title']}' ({milestone['amount']}): payment "
            f"{step['status']}, {step['released_amount']} of {step['amount']} released"
        )
    print("   Wes gets 95.00 then 190.00; the fee 15.00 is split 5.00 + 10.00")
    await demo.show(worker)

    await demo.net_revenue()

    say("Carla's summary and Wes's history")
    summary = await demo.call("GET", "/payments/summary/client", client)
    for line in summary["items"]:
        print(
            f"   Carla, {line['currency']}: {line['payment_count']} payments, spent "
            f"{line['total_spent']} (held {line['total_held']}, released "
            f"{line['total_released']}), refunded {line['total_refunded']}"
        )
    history = await demo.call("GET", "/payments/transactions", worker)
    for t in reversed(history["items"]):
        print(
            f"   {t['created_at'][:19]} {t['transaction_type']:<8} {t['amount']:>8}"
            f"  {t['description']}"
        )


async def stablecoin_job(
    demo: Demo, client: dict[str, str], worker: dict[str, str], worker_id: int
) -> None:
    say("6. A fourth job paid in USDC (Stripe stablecoins): captured at once, then released")
    booking = await demo.call(
        "POST",
        "/bookings",
        client,
        json={
            "worker_id": worker_id,
            "title": "Paint the fence",
            "amount": "80.00",
            "currency": "USD",
        },
    )
    body = {**{k: booking[k] for k in ("amount", "currency")}, "booking_id": booking["id"]}
    created = await demo.call(
        "POST", "/payments/stripe/payment-intent", client, json={**body, "payment_method": "crypto"}
    )
    intent = created["stripe_payment_id"]
    # What Stripe.js and crypto.stripe.com do in Carla's browser, played by the simulator.
    await demo.call(
        "POST",
        f"/simulator/stripe/payment_intents/{intent}/confirm",
        None,
        json={"payment_method": "pm_crypto_usdc"},
    )
    held = await demo.call(
        "POST",
        "/payments/stripe/confirm",
        client,
        json={"payment_intent_id": intent, "booking_id": booking["id"]},
    )
    print(f"   payment #{held['id']} is {held['status']} (stablecoin), nothing left to capture")
    await demo.call("POST", f"/payments/{held['id']}/release", client)
    print("   Carla releases it: Wes gets 76.00 (95% of 80.00), the platform 4.00")
    await demo.show(worker)


async def run_occurrence(
    demo: Demo, path: str, client: dict[str, str], moment: datetime
) -> dict[str, Any]:
    """The run job at `moment`, until it has recorded the due occurrence. A run skips a
    schedule whose row another transaction holds (SKIP LOCKED: the background worker
    applying the setup's webhook, say), leaving it to the next minute's job; the demo
    cannot wait a minute, so it asks again at once, a bounded number of times."""
    for _ in range(RUN_ATTEMPTS):
        await run_due(demo.runtime, now=moment)
        schedule: dict[str, Any] = await demo.call("GET", path, client)
        due = schedule["next_run_at"]
        if due is None or datetime.fromisoformat(due) != moment:
            return schedule
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{path}: the occurrence due {moment} was never run")


async def recurring_story(demo: Demo) -> None:
    """A recurring schedule: the card saved once, each month's booking paid off-session.
    The run job (every minute in the worker) is called here with the clock moved to each
    due date, as the tests do."""
    say("Rosa books Walt monthly from 31 January, 80.00 USD, 3 times (recurring schedule)")
    _, rosa = await demo.user("rosa@example.com", "Rosa Client", "client")
    worker_id, worker = await demo.user("walt@example.com", "Walt Worker", "worker")
    start = datetime(now().year + 1, 1, 31, 9, tzinfo=UTC)
    body = {
        "worker_id": worker_id,
        "title": "Monthly garden",
        "amount": "80.00",
        "currency": "USD",
        "interval": "monthly",
        "starts_at": start.isoformat(),
        "occurrences": 3,
        "payment_method": "stripe",
    }
    schedule = await demo.call("POST", "/recurring-schedules", rosa, json=body)
    setup_id = schedule["setup"]["setup_intent_id"]
    print(f"   schedule #{schedule['id']} is {schedule['status']}: SetupIntent {setup_id}")
    await demo.call(
        "POST",
        f"/simulator/stripe/setup_intents/{setup_id}/confirm",
        None,
        json={"payment_method": "pm_card_visa"},
    )
    path = f"/recurring-schedules/{schedule['id']}"
    schedule = await demo.call("GET", path, rosa)
    print(f"   Rosa saved her card (Stripe.js confirmSetup): {schedule['status']}")
    while schedule["next_run_at"] is not None:
        moment = datetime.fromisoformat(schedule["next_run_at"])
        schedule = await run_occurrence(demo, path, rosa, moment)
        run = schedule["runs"][-1]
        print(
            f"   {moment:%d %b %Y}: occurrence {run['number']} booked (booking "
            f"#{run['booking_id']}), payment #{run['payment_id']} {run['status']} off-session"
        )
    print(f"   schedule {schedule['status']}: 3 x 80.00 in escrow, Walt's 76.00 each once released")
    await demo.show(worker)
    await paypal_recurring(demo, rosa, worker_id, start)


async def paypal_recurring(
    demo: Demo, client: dict[str, str], worker_id: int, start: datetime
) -> None:
    """The same with PayPal Vault v3: PayPal saved once (setup token approved, exchanged
    for a payment token), each occurrence an order on that vault id, held in escrow."""
    say("Rosa books Walt again, weekly, 45.00 USD twice, paid with her saved PayPal")
    body = {
        "worker_id": worker_id,
        "title": "Weekly windows",
        "amount": "45.00",
        "currency": "USD",
        "interval": "weekly",
        "starts_at": start.isoformat(),
        "occurrences": 2,
        "payment_method": "paypal",
    }
    schedule = await demo.call("POST", "/recurring-schedules", client, json=body)
    approval = urlsplit(schedule["setup"]["approval_url"])
    print(f"   schedule #{schedule['id']} is {schedule['status']}: she approves at PayPal")
    await demo.call("GET", approval.path.removeprefix("/api/v1") + "?" + approval.query, None)
    path = f"/recurring-schedules/{schedule['id']}"
    schedule = await demo.call("GET", path, client)
    print(f"   back from PayPal, the schedule saves her payment token: {schedule['status']}")
    while schedule["next_run_at"] is not None:
        moment = datetime.fromisoformat(schedule["next_run_at"])
        schedule = await run_occurrence(demo, path, client, moment)
        run = schedule["runs"][-1]
        print(
            f"   {moment:%d %b %Y}: occurrence {run['number']}, PayPal payment "
            f"#{run['payment_id']} {run['status']} (authorised on the vault id)"
        )


ADMIN_EMAIL = "admin@handwork.example"


async def main(url: str, keep_serving: bool) -> None:
    # SIGTERM ends the demo as Ctrl-C does (asyncio cancels the story, then `run` stops
    # the database).
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    await asyncio.to_thread(migrate.upgrade, url)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        stripe_secret_key=None,
        paypal_client_id=None,
        jwt_secret="demo-only-jwt-secret-not-for-production",
        stripe_crypto_enabled=True,  # the simulator plays Stripe's stablecoin payments
    )
    runtime = Runtime.build(settings, url)
    port = int(os.environ.get("DEMO_PORT") or free_port())
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        async with (
            running_worker(runtime, concurrency=2, name="demo"),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
        ):
            for _ in range(100):
                if server.started:
                    break
                await asyncio.sleep(0.05)
            print(f"Handwork Payments demo: the service runs at http://127.0.0.1:{port}")
            print(f"providers: {runtime.providers.modes()}")
            await story(Demo(http, runtime))
            await recurring_story(Demo(http, runtime))
            print("\nDone: every movement above is a balanced journal entry.")
            print(f"\nDashboard: http://127.0.0.1:{port}/dashboard  (API docs: /docs)")
            print(f"Admin: {ADMIN_EMAIL} / {PASSWORD}  (this temporary database only)")
            if keep_serving:
                print("Serving until Ctrl-C; the database is deleted when it stops.", flush=True)
                # uvicorn takes Ctrl-C and SIGTERM while it serves: it stops, then
                # raises the signal again, which ends the demo through `run`.
                await serving
            else:
                print("Run `make demo ARGS=--serve` to keep it serving and look around.")
    finally:
        server.should_exit = True
        await serving
        await runtime.aclose()


def _interrupt(signum: int, _: Any) -> None:
    """SIGTERM before the event loop runs: through the finally blocks below, as Ctrl-C."""
    raise KeyboardInterrupt


def run(argv: list[str]) -> int:
    """The embedded PostgreSQL lives exactly as long as this function: stopped on a normal
    end, an error and Ctrl-C/SIGTERM alike, before its temporary data folder is deleted
    (stopped after, it could not be stopped cleanly and was left running)."""
    signal.signal(signal.SIGTERM, _interrupt)
    keep_serving = "--serve" in argv
    with tempfile.TemporaryDirectory(prefix="handwork-demo-") as data_dir:
        try:
            url = os.environ.get("DEMO_DATABASE_URL") or start_embedded(data_dir)
            print(f"database: a temporary embedded PostgreSQL in {data_dir}", flush=True)
            asyncio.run(main(url, keep_serving))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("\nstopped")
        finally:
            stop_embedded()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
