"""Reconciliation: our held, captured, refunded and paid-out amounts against what the
providers report. The simulators agree with us until the test acts behind our back (as
someone in a provider's dashboard would); then every difference is listed, by the service,
as alerts, and by `handwork-payments reconcile` with a non-zero exit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from handwork_payments.kit.clock import now
from handwork_payments.models import PayoutStatus, WorkerPayout
from handwork_payments.payouts import service as payouts
from handwork_payments.providers.base import HoldRef
from handwork_payments.reconcile import service
from handwork_payments.runtime import Runtime
from tests.faults import earner, payment_row, payout_row, requested, simulator
from tests.helpers import Api
from tests.payments.flows import paypal_held


def run_cli(database_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE_", "PAYPAL_", "DATABASE_URL"))
    }
    env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "handwork_payments.cli", "reconcile", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def books(api: Api, runtime: Runtime) -> dict[str, int]:
    """One of each kind of object the providers know of, all agreeing."""
    _, _, held = await api.held_payment("20.00")
    client2, pro2, released = await api.held_payment("50.00")
    await api.post(f"/payments/{released['id']}/release", client2)
    await api.post(
        "/payments/refund", pro2, {"payment_id": released["id"], "amount": "5.00", "reason": "x"}
    )
    _, pro3, voided = await api.held_payment("30.00")
    await api.post("/payments/refund", pro3, {"payment_id": voided["id"], "reason": "x"})
    pp_client, _, paypal = await paypal_held(api, "40.00")
    await api.post(f"/payments/{paypal['id']}/release", pp_client)

    worker, admin = await earner(api)
    stripe_payout = await requested(api, worker, "30.00", "stripe")
    paypal_payout = await requested(api, worker, "20.00", "paypal")
    refused = await requested(api, worker, "10.00", "stripe")
    for payout in (stripe_payout, paypal_payout, refused):
        await api.post(f"/payments/payouts/{payout['id']}/process", admin)
    await payouts.send(runtime, stripe_payout["id"])
    await payouts.send_batch(runtime, "paypal")
    await simulator(runtime).inject_fault("send_payout", "error")
    await payouts.send(runtime, refused["id"])
    assert (await payout_row(runtime, refused["id"])).status == "failed"
    return {
        "held": held["id"],
        "released": released["id"],
        "voided": voided["id"],
        "paypal": paypal["id"],
        "stripe_payout": stripe_payout["id"],
        "paypal_payout": paypal_payout["id"],
    }


async def test_books_that_agree_show_no_difference_and_every_disagreement_is_listed(
    api: Api, runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    ids = await books(api, runtime)
    result = await service.reconcile(runtime, now=now())
    assert result.differences == []
    assert result.payments_checked == 5 and result.payouts_checked == 3
    cli = await asyncio.to_thread(run_cli, database_url, tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert "reconciled 5 payments and 3 payouts: 0 differences" in cli.stdout

    # Behind our back: a refund in Stripe's dashboard, a capture there, a transfer reversed.
    stripe = simulator(runtime)
    released = await stripe.get_hold(HoldRef(await _intent(runtime, ids["released"])))
    await stripe.refund(
        ref=HoldRef(released.provider_payment_id),
        amount=700,
        currency="USD",
        idempotency_key="dashboard-refund-1",
    )
    await stripe.capture(
        ref=HoldRef(await _intent(runtime, ids["held"])),
        amount=2000,
        currency="USD",
        idempotency_key="dashboard-capture-1",
    )
    transfer = (await payout_row(runtime, ids["stripe_payout"])).stripe_transfer_id
    assert transfer is not None
    await stripe.reverse_transfer(transfer_id=transfer, amount=3000, idempotency_key="rev-1")

    result = await service.reconcile(runtime, now=now())
    found = {
        (d.object_type, d.object_id, d.field): (d.ours, d.theirs) for d in result.differences or ()
    }
    assert found == {
        ("payment", ids["released"], "refunded_amount"): (500, 1200),
        ("payment", ids["held"], "state"): ("held, authorised", "captured"),
        ("payout", ids["stripe_payout"], "state"): ("completed", "failed"),
    }

    cli = await asyncio.to_thread(run_cli, database_url, tmp_path, "--alert")
    assert cli.returncode == 1, cli.stderr
    lines = [line for line in cli.stdout.splitlines() if line.startswith("DIFFERENCE ")]
    assert len(lines) == 3
    assert f"DIFFERENCE payment {ids['released']} refunded_amount: ours 500, provider 1200" in lines
    admin = await api.admin()
    alerts = (await api.get("/admin/alerts", admin))["items"]
    assert sorted((a["kind"], a["object_type"], a["object_id"]) for a in alerts) == sorted(
        [
            ("payout_failed", "payout", await _refused(runtime)),
            ("reconciliation_difference", "payment", ids["released"]),
            ("reconciliation_difference", "payment", ids["held"]),
            ("reconciliation_difference", "payout", ids["stripe_payout"]),
        ]
    )


async def test_a_window_looks_at_recent_changes_and_everything_in_escrow(
    api: Api, runtime: Runtime
) -> None:
    await books(api, runtime)
    result = await service.reconcile(runtime, now=now(), since=now())
    assert result.differences == []
    assert result.payments_checked == 1  # the one still in escrow
    assert result.payouts_checked == 0


async def _intent(runtime: Runtime, payment_id: int) -> str:
    intent = (await payment_row(runtime, payment_id)).stripe_payment_id
    assert intent is not None
    return intent


async def _refused(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        payout_id = await session.scalar(
            select(WorkerPayout.id).where(WorkerPayout.status == PayoutStatus.FAILED)
        )
    assert payout_id is not None
    return int(payout_id)
