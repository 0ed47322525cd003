"""`reconcile --statements`: the simulators' statements (Stripe balance transactions,
PayPal Transaction Search lines) against our books. A clean run finds nothing; each
difference seeded at the provider (a fee changed, a refund made in its dashboard, a
transfer it does not have) is named by its line or by our object."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, select

from handwork_payments.kit.clock import now
from handwork_payments.models import SimulatedObject
from handwork_payments.providers.base import HoldRef, StatementKind
from handwork_payments.providers.simulated.store import save
from handwork_payments.providers.simulated.stripe import SimulatedStripe
from handwork_payments.reconcile import statements
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as webhooks
from tests.faults import payment_row, payout_row, simulator
from tests.helpers import Api
from tests.reconcile.test_reconcile import books, run_cli


async def run(runtime: Runtime) -> statements.StatementResult:
    moment = now()
    return await statements.reconcile_statements(
        runtime, now=moment + timedelta(seconds=5), since=moment - timedelta(days=1)
    )


async def test_the_simulators_statements_match_our_books_line_by_line(
    api: Api, runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    ids = await books(api, runtime)
    result = await run(runtime)
    assert result.differences == []
    # Stripe: 2 captures (50.00 and the earner's 100.00; 20.00 is only authorised, 30.00
    # was voided), 1 refund, 1 transfer; PayPal: 1 capture, 1 payout item.
    assert (result.lines_checked, result.objects_checked) == (6, 6)
    stripe_lines = await simulator(runtime).statement(now() - timedelta(days=1), now())
    captured = await payment_row(runtime, ids["released"])
    (line,) = [x for x in stripe_lines if x.reference == captured.provider_capture_id]
    # 50.00 at 2.9% + 30c: 1.45 + 0.30.
    assert (line.kind, line.amount, line.fee, line.currency) == (
        StatementKind.CAPTURE, 5000, 175, "USD"
    )  # fmt: skip
    cli = await asyncio.to_thread(run_cli, database_url, tmp_path, "--statements")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "matched 6 statement lines and 6 objects of ours: 0 differences" in cli.stdout


async def test_each_seeded_difference_is_named(
    api: Api, runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    ids = await books(api, runtime)
    stripe = simulator(runtime)
    released = await payment_row(runtime, ids["released"])
    transfer = (await payout_row(runtime, ids["stripe_payout"])).stripe_transfer_id
    async with runtime.sessions() as session, session.begin():
        lines = (
            await session.scalars(
                select(SimulatedObject).where(SimulatedObject.kind == "balance_transaction")
            )
        ).all()
        # A fee changed at the provider: the capture's line now says 2.00.
        fee_line = next(x for x in lines if x.data["source"] == released.provider_capture_id)
        save(fee_line, {**fee_line.data, "fee": 200, "net": 4800})
        # A transfer the provider does not have.
        await session.execute(
            delete(SimulatedObject).where(
                SimulatedObject.kind == "balance_transaction",
                SimulatedObject.data["source"].astext == transfer,
            )
        )
    # A refund made in the provider's dashboard.
    dashboard = await stripe.refund(
        ref=HoldRef(released.stripe_payment_id or ""),
        amount=700,
        currency="USD",
        idempotency_key="dashboard-refund-1",
    )
    refund_line = (await stripe.object_data(dashboard.refund_id))["balance_transaction"]
    result = await run(runtime)
    found = sorted(str(d) for d in result.differences or ())
    assert found == sorted(
        [
            f"stripe line {fee_line.id} ({released.provider_capture_id}): capture 5000 fee 200 "
            f"USD, ours capture 5000 fee 175 USD (payment {ids['released']})",
            f"stripe line {refund_line} ({dashboard.refund_id}): refund -700 fee 0 USD, "
            "no entry of ours",
            f"stripe payout {ids['stripe_payout']} ({transfer}): transfer -3000 fee 0 USD in "
            "our books, no line at the provider",
        ]
    )

    cli = await asyncio.to_thread(run_cli, database_url, tmp_path, "--statements", "--alert")
    assert cli.returncode == 1, cli.stdout + cli.stderr
    printed = [x for x in cli.stdout.splitlines() if x.startswith("DIFFERENCE ")]
    assert sorted(x.removeprefix("DIFFERENCE ") for x in printed) == found
    admin = await api.admin()
    alerts = (await api.get("/admin/alerts", admin))["items"]
    named = [(a["object_type"], a["object_id"]) for a in alerts]
    for subject in (
        ("payment", ids["released"]),
        ("statement", 0),
        ("payout", ids["stripe_payout"]),
    ):
        assert subject in named


async def test_a_payout_returned_by_a_full_reversal_matches_both_its_lines(
    api: Api, runtime: Runtime
) -> None:
    ids = await books(api, runtime)
    stripe = simulator(runtime)
    assert isinstance(stripe, SimulatedStripe)
    transfer_id = (await payout_row(runtime, ids["stripe_payout"])).stripe_transfer_id
    assert transfer_id is not None
    await stripe.reverse_transfer(transfer_id=transfer_id, amount=3000, idempotency_key="ret-1")
    body, headers = stripe.stripe_event("transfer.reversed", await stripe.object_data(transfer_id))
    stored, _ = await webhooks.receive(runtime, "stripe", headers, body)
    assert stored is not None
    await webhooks.process(runtime, stored.id)
    assert (await payout_row(runtime, ids["stripe_payout"])).status == "failed"

    result = await run(runtime)
    assert result.differences == []
    lines = await stripe.statement(now() - timedelta(days=1), now() + timedelta(seconds=5))
    (reversal,) = [x for x in lines if x.kind is StatementKind.TRANSFER_REVERSAL]
    assert (reversal.parent, reversal.amount) == (transfer_id, 3000)
