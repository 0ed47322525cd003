"""Races against the real server process: `handwork-payments serve` on a free port, with
its own in-process worker, on the test session's database, driven over real HTTP.

Each test fires requests at once and checks that row locks let exactly the right ones
through: no balance spent twice, no payment moved twice, exact amounts after. After each,
`handwork-payments ledger verify` (a subprocess, so the CLI is tested too) must pass, and
conftest checks the invariants again after the test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from handwork_payments.ledger.verify import verify
from handwork_payments.runtime import Runtime
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.helpers import Api, Party, eventually

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SERVER_JWT_SECRET = "concurrency-test-jwt-secret-0123456789"
SERVER_FERNET_KEY = "qEo2oYw0Ff7p3TzN2x0b1m3a9Y7tV4Xk8cQ5rW6uJ1s="
# Environment variables that could point the server at a real provider or another database.
SCRUBBED = (
    "STRIPE_SECRET_KEY",
    "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_API_BASE",
    "PAYPAL_CLIENT_ID",
    "PAYPAL_CLIENT_SECRET",
    "PAYPAL_API_BASE",
    "PAYPAL_WEBHOOK_ID",
    "FIRST_ADMIN_EMAIL",
    "FIRST_ADMIN_PASSWORD",
    "PLATFORM_FEE_PERCENTAGE",
    "AUTO_RELEASE_HOURS",
    "DB_POOL_SIZE",
)
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env.update(
        DATABASE_URL=database_url,
        JWT_SECRET=SERVER_JWT_SECRET,
        STRIPE_WEBHOOK_SECRET=TEST_WEBHOOK_SECRET,
        PASSWORD_HASH_TIME_COST="1",
        PASSWORD_HASH_MEMORY_KIB="1024",
        METADATA_ENCRYPTION_KEYS=SERVER_FERNET_KEY,
        # The races register and log in more users from one address than people would.
        LOGIN_MAX_ATTEMPTS_PER_IP_PER_MINUTE="100000",
        REGISTRATIONS_PER_IP_PER_HOUR="100000",
        PYTHONUNBUFFERED="1",
    )
    return env


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole process group, SIGKILL when it does not stop in time."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


class Server:
    def __init__(self, base_url: str, env: dict[str, str], log: Path) -> None:
        self.base_url = base_url
        self.env = env
        self.log = log

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def server(
    request: pytest.FixtureRequest,
    database_url: str,
    runtime: Runtime,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """The real `handwork-payments serve` process, with its in-process worker, on the
    database the `runtime` fixture uses (so conftest empties and verifies it too). One per
    test, started after conftest has emptied the tables: emptying them under a running
    worker would delete its procrastinate_workers row, and it could fetch no job after.
    It runs in a scratch directory so that no `.env` file is read. A test marked
    `server_env(NAME="value")` gives it those settings too."""
    del runtime  # requested for its place in the fixture order (after the cleaning)
    workdir = tmp_path_factory.mktemp("server")
    log = workdir / "server.log"
    port = free_port()
    env = server_env(database_url)
    marker = request.node.get_closest_marker("server_env")
    if marker is not None:
        env.update(marker.kwargs)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "handwork-payments"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    server = Server(f"http://127.0.0.1:{port}", env, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{server.log_tail()}")
            try:
                r = httpx.get(f"{server.base_url}/health", timeout=2.0)
                if r.status_code == 200:
                    health = r.json()
                    assert health["providers"] == {"stripe": "simulated", "paypal": "simulated"}
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer /health:\n{server.log_tail()}")
            time.sleep(0.1)
        yield server
        assert process.poll() is None, f"server died:\n{server.log_tail()}"
    finally:
        stop(process)
    # No request failed inside and no background job broke (none of these tests injects
    # a fault): the server logged no traceback.
    assert "Traceback" not in log.read_text(errors="replace"), server.log_tail(120)


@pytest.fixture
async def api_http(server: Server, runtime: Runtime) -> AsyncIterator[Api]:
    """The test helpers over real HTTP to the server process. (Admins are created with
    the test's own runtime: the server shares its database.)"""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0, limits=limits) as http:
        yield Api(http, runtime)


async def ledger_verify(server: Server) -> None:
    """`handwork-payments ledger verify` against the server's database must exit 0."""
    process = await asyncio.create_subprocess_exec(
        str(BIN / "handwork-payments"),
        "ledger",
        "verify",
        env=server.env,
        cwd=str(server.log.parent),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, f"ledger verify failed:\n{out.decode()}\n{err.decode()}"
    assert b"ledger ok" in out


async def invariants_hold(api: Api) -> None:
    """The same invariants in process (cheaper than the CLI, for checks between rounds)."""
    async with api.runtime.sessions() as session:
        problems = await verify(session)
    assert problems == [], "\n".join(problems)


# --- money arithmetic the tests expect, written out independently of the service --------


def cents(text: str) -> int:
    value = Decimal(text) * 100
    assert value == value.to_integral_value(), text
    return int(value)


def usd(minor: int) -> str:
    return str((Decimal(minor) / 100).quantize(Decimal("0.01")))


def fee_of(amount: int) -> int:
    return int((Decimal(amount) * 5 / 100).quantize(Decimal(1), ROUND_HALF_UP))


def refunded_fee(refunded: int, amount: int) -> int:
    return int((Decimal(refunded) * fee_of(amount) / amount).to_integral_value(ROUND_FLOOR))


async def fee_revenue(api: Api, admin: Party) -> int:
    """The platform's fee history in USD, summed (an admin's transactions are the fee rows)."""
    page = await api.get("/payments/transactions", admin, limit=100)
    assert page["total"] <= 100
    return sum(cents(t["amount"]) for t in page["items"] if t["currency"] == "USD")


async def held_payment(api: Api, method: str, amount: str) -> tuple[Party, Party, dict[str, Any]]:
    """A client, a worker and a held payment between them, by Stripe or PayPal."""
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, amount)
    if method == "stripe":
        r = await api.stripe_payment(client, booking)
        assert r.status_code == 201, r.text
        payment: dict[str, Any] = r.json()
    else:
        r = await api.post(
            "/payments/paypal/create",
            client,
            {
                "booking_id": booking["id"],
                "amount": amount,
                "currency": "USD",
                "return_url": "https://app.example.com/ok",
                "cancel_url": "https://app.example.com/cancel",
            },
        )
        assert r.status_code == 201, r.text
        approval = await api.client.get(r.json()["approval_url"])
        assert approval.status_code == 200, approval.text
        r = await api.post(
            "/payments/paypal/execute",
            client,
            {
                "payment_id": r.json()["paypal_payment_id"],
                "payer_id": approval.json()["payer_id"],
                "booking_id": booking["id"],
            },
        )
        assert r.status_code == 200, r.text
        payment = r.json()
    assert payment["status"] == "held", payment
    return client, pro, payment


# --- the races ------------------------------------------------------------------------------


async def test_parallel_payout_requests_never_spend_the_balance_twice(
    api_http: Api, server: Server
) -> None:
    api = api_http
    # 123.45 at 5%: fee round_half_up(6.1725) = 6.17, worker 117.28. Payouts of 12.34:
    # nine fit (111.06), the tenth would need 123.40; 6.22 is left.
    client, pro, payment = await held_payment(api, "stripe", "123.45")
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    assert (await api.earnings(pro))["available_balance"] == "117.28"
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"stripe_account_id": "acct_1Concurrent"},
        headers=pro.headers,
    )
    assert r.status_code == 200, r.text

    async def request_payout() -> httpx.Response:
        return await api.post(
            "/payments/payouts/request", pro, {"amount": "12.34", "payment_method": "stripe"}
        )

    answers = await asyncio.gather(*(request_payout() for _ in range(20)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * 9 + [400] * 11, [(r.status_code, r.text) for r in answers]
    for r in answers:
        if r.status_code == 400:
            assert "Insufficient available balance" in r.json()["detail"], r.text
    earnings = await api.earnings(pro)
    assert earnings["available_balance"] == "6.22"
    assert earnings["pending_payouts"] == "111.06"
    assert earnings["total_earned"] == "117.28"
    payouts = (await api.get("/payments/payouts", pro))["items"]
    assert sorted((p["amount"], p["status"]) for p in payouts) == [("12.34", "pending")] * 9
    await invariants_hold(api)

    # Each payout processed twice at once: one of each pair wins, the other is a 409; the
    # server's own worker then sends them, each exactly once.
    admin = await api.admin()
    ids = [p["id"] for p in payouts]
    answers = await asyncio.gather(
        *(api.post(f"/payments/payouts/{i}/process", admin) for i in ids + ids)
    )
    by_id: dict[int, list[int]] = {}
    for i, r in zip(ids + ids, answers, strict=True):
        by_id.setdefault(i, []).append(r.status_code)
    assert all(sorted(c) == [200, 409] for c in by_id.values()), by_id

    async def all_completed() -> bool:
        items = (await api.get("/payments/payouts", pro))["items"]
        return all(p["status"] == "completed" for p in items)

    await eventually(all_completed, timeout_seconds=30)
    transfers = {
        p["stripe_transfer_id"] for p in (await api.get("/payments/payouts", pro))["items"]
    }
    assert len(transfers) == 9 and all(t.startswith("tr_") for t in transfers)
    earnings = await api.earnings(pro)
    assert earnings["available_balance"] == "6.22"
    assert earnings["pending_payouts"] == "0.00"
    assert earnings["total_paid_out"] == "111.06"
    assert earnings["total_earned"] == "117.28"
    await ledger_verify(server)


# Two connections for the API and the in-process worker: the pool has no overflow, so a
# path that held one connection while waiting for a second would deadlock here at once.
@pytest.mark.server_env(DB_POOL_SIZE="2")
async def test_a_burst_larger_than_the_connection_pool_is_served(
    api_http: Api, server: Server
) -> None:
    """Thirty times more requests at once than the server has database connections: each
    must still be answered, none with a 5xx, none after a pool timeout. (A request that
    held one pooled connection for its whole life while its service command waited for a
    second one made such a burst deadlock the process.) Card holds and releases run in
    the burst too: the simulated provider takes connections of the same pool."""
    api = api_http
    # 40.00 at 5%: worker 38.00. Fifty payouts of 1.00: 38 fit, 12 do not.
    client, pro, payment = await held_payment(api, "stripe", "40.00")
    payer, payee = await api.user("client"), await api.user("worker")
    bookings = [await api.booking(payer, payee, "10.00") for _ in range(6)]
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"paypal_email": "burst@example.com"},
        headers=pro.headers,
    )
    assert r.status_code == 200, r.text
    started = time.monotonic()
    answers = await asyncio.gather(
        *(
            api.post("/payments/payouts/request", pro, {"amount": 1, "payment_method": "paypal"})
            for _ in range(50)
        ),
        *(
            api.client.get("/api/v1/payments/earnings/worker", headers=pro.headers)
            for _ in range(10)
        ),
        *(api.stripe_payment(payer, booking) for booking in bookings),
    )
    elapsed = time.monotonic() - started
    assert all(r.status_code < 500 for r in answers), [
        (r.status_code, r.text) for r in answers if r.status_code >= 500
    ]
    codes = sorted(r.status_code for r in answers[:50])
    assert codes == [201] * 38 + [400] * 12, codes
    held = [r.json()["status"] for r in answers[60:]]
    assert held == ["held"] * 6, [r.text for r in answers[60:]]
    # Well under the 30 s a request waits for a pooled connection before it gives up.
    assert elapsed < 25, f"the burst took {elapsed:.1f}s: requests waited for connections"
    earnings = await api.earnings(pro)
    assert earnings["available_balance"] == "0.00"
    assert earnings["pending_payouts"] == "38.00"
    await ledger_verify(server)


RACERS = ("release", "refund", "dispute")
RACE_ROUNDS = (
    ("stripe", "150.00"),
    ("paypal", "99.99"),
    ("stripe", "0.50"),
    ("paypal", "1234.57"),
    ("stripe", "10.01"),
    ("paypal", "70.03"),
)


async def test_release_refund_and_dispute_racing_on_one_payment(
    api_http: Api, server: Server
) -> None:
    api = api_http
    admin = await api.admin()
    winners: list[str] = []
    expected_fees = 0
    for round_number, (method, amount_text) in enumerate(RACE_ROUNDS):
        client, pro, payment = await held_payment(api, method, amount_text)
        amount = cents(amount_text)
        fee = fee_of(amount)
        assert cents(payment["platform_fee"]) == fee

        calls: dict[str, tuple[str, Party, dict[str, Any] | None]] = {
            "release": (f"/payments/{payment['id']}/release", client, None),
            "refund": ("/payments/refund", admin, {"payment_id": payment["id"], "reason": "race"}),
            "dispute": (
                "/payments/disputes",
                client,
                {"payment_id": payment["id"], "reason": "race", "description": "fired at once"},
            ),
        }
        # A different firing order each round, for different interleavings.
        order = [RACERS[(round_number + k) % 3] for k in range(3)]
        if round_number % 2:
            order.reverse()
        results = dict(
            zip(order, await asyncio.gather(*(api.post(*calls[n]) for n in order)), strict=True)
        )
        for name, r in results.items():
            assert r.status_code < 500, (name, r.status_code, r.text)
        won = sorted(name for name, r in results.items() if r.is_success)
        lost = {name: r for name, r in results.items() if not r.is_success}
        for name, r in lost.items():
            assert r.status_code == 409, (name, r.status_code, r.text)
            assert r.json()["detail"], r.text

        final = await api.get(f"/payments/{payment['id']}", client)
        earnings = await api.earnings(pro)
        if won == ["refund", "release"]:  # (sorted names: the release came first)
            # Not a race lost: the release had finished before the refund began, and a
            # full refund of a released payment is allowed. The refund answer proves it
            # came second (it refunded a released payment).
            refunded = results["refund"].json()
            assert refunded["released_at"] is not None and refunded["status"] == "refunded"
            assert results["dispute"].status_code == 409
            assert final["status"] == "refunded" and final["refunded_amount"] == amount_text
            assert earnings["available_balance"] == "0.00"
            assert earnings["pending_balance"] == "0.00"
            winners.append("release+refund")
            assert await fee_revenue(api, admin) == expected_fees
            await invariants_hold(api)
            continue
        assert len(won) == 1, {n: (r.status_code, r.text) for n, r in results.items()}
        winner = won[0]
        winners.append(winner)
        assert final["amount"] == amount_text
        if winner == "release":
            assert results["release"].status_code == 200
            assert final["status"] == "released" and final["refunded_amount"] == "0.00"
            assert earnings["available_balance"] == usd(amount - fee)
            assert earnings["pending_balance"] == "0.00"
            expected_fees += fee
        elif winner == "refund":
            assert results["refund"].status_code == 200
            assert final["status"] == "refunded" and final["refunded_amount"] == amount_text
            assert final["released_at"] is None
            assert earnings["available_balance"] == "0.00"
            assert earnings["pending_balance"] == "0.00"
            booking = await api.get(f"/bookings/{payment['booking_id']}", client)
            assert booking["status"] == "cancelled"
        else:
            assert results["dispute"].status_code == 201
            assert results["dispute"].json()["status"] == "open"
            assert final["status"] == "disputed" and final["refunded_amount"] == "0.00"
            assert earnings["available_balance"] == "0.00"
            assert earnings["pending_balance"] == usd(amount - fee)
            disputes = (await api.get("/payments/disputes", client))["items"]
            assert [d["payment_id"] for d in disputes] == [payment["id"]]
        assert await fee_revenue(api, admin) == expected_fees
        await invariants_hold(api)
    await ledger_verify(server)
    # Which side wins is up to the scheduler; every outcome above was exact whichever it was.
    print("race winners:", winners)


async def test_parallel_partial_refunds_never_exceed_the_amount(
    api_http: Api, server: Server
) -> None:
    api = api_http
    admin = await api.admin()
    client, pro, payment = await held_payment(api, "paypal", "100.01")
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    amount, fee = 10001, fee_of(10001)
    assert fee == 500 and payment["worker_amount"] == "95.01"

    # Twenty refunds adding up to 157.06, far more than the 100.01 paid.
    asked = [cents(a) for a in ("7.77", "3.33", "11.11", "9.99", "4.01") * 4]
    assert sum(asked) > amount

    async def refund(minor: int) -> httpx.Response:
        """Retries while another refund's provider call is in flight (409), until this
        one is either done (200) or no longer fits (400)."""
        for _ in range(400):
            r = await api.post(
                "/payments/refund",
                admin,
                {"payment_id": payment["id"], "amount": usd(minor), "reason": "parallel"},
            )
            if r.status_code != 409:
                return r
            await asyncio.sleep(0.01)
        raise AssertionError(f"refund of {usd(minor)} still conflicting: {r.text}")

    answers = await asyncio.gather(*(refund(m) for m in asked))
    for r in answers:
        assert r.status_code in (200, 400), (r.status_code, r.text)
    succeeded = [m for m, r in zip(asked, answers, strict=True) if r.status_code == 200]
    refused = [m for m, r in zip(asked, answers, strict=True) if r.status_code == 400]
    final = await api.get(f"/payments/{payment['id']}", client)
    refunded = cents(final["refunded_amount"])
    assert refunded == sum(succeeded) <= amount
    assert refused, "the asked refunds add up to more than the amount"
    left = amount - refunded
    # A refund was refused only because what was left (which only shrinks) was too little.
    assert all(m > left for m in refused), (left, refused)
    assert final["status"] == ("refunded" if left == 0 else "released")
    for r in answers:
        if r.status_code == 400:
            assert "left to refund" in r.json()["detail"], r.text

    back_fee = refunded_fee(refunded, amount)
    earnings = await api.earnings(pro)
    assert earnings["available_balance"] == usd(amount - fee - (refunded - back_fee))
    assert earnings["total_earned"] == usd(amount - fee - (refunded - back_fee))
    assert await fee_revenue(api, admin) == fee - back_fee
    history = (await api.get("/payments/transactions", client, limit=100))["items"]
    refunds = sorted(cents(t["amount"]) for t in history if t["transaction_type"] == "refund")
    assert refunds == sorted(succeeded)
    summary = await api.get("/payments/summary/client", client, currency="USD")
    assert summary["total_refunded"] == usd(refunded)
    await ledger_verify(server)


async def test_payouts_racing_a_refund_that_reverses_a_stripe_payout(
    api_http: Api, server: Server
) -> None:
    """A worker already paid out through Stripe asks for more payouts while a full refund
    of the payment they came from takes its share back. Payouts granted before the refund
    left the balance enough; none after (it is negative then); the refund reverses the
    Stripe transfer to cover what the worker owes, once. Exact whatever the order."""
    api = api_http
    admin = await api.admin()
    client, pro, payment = await held_payment(api, "stripe", "200.00")
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"stripe_account_id": "acct_1Racing"},
        headers=pro.headers,
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        "/payments/payouts/request", pro, {"amount": "100.00", "payment_method": "stripe"}
    )
    assert r.status_code == 201, r.text
    first_payout = r.json()["id"]
    r = await api.post(f"/payments/payouts/{first_payout}/process", admin)
    assert r.status_code == 200, r.text

    async def paid_out() -> bool:
        return (await api.earnings(pro))["total_paid_out"] == "100.00"

    await eventually(paid_out, timeout_seconds=30)
    assert (await api.earnings(pro))["available_balance"] == "90.00"

    refund = api.post("/payments/refund", admin, {"payment_id": payment["id"], "reason": "race"})
    requests = [
        api.post("/payments/payouts/request", pro, {"amount": "10.00", "payment_method": "stripe"})
        for _ in range(10)
    ]
    refunded, *answers = await asyncio.gather(refund, *requests)
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["status"] == "refunded"
    assert all(r.status_code in (201, 400) for r in answers), [r.text for r in answers]
    granted = sum(r.status_code == 201 for r in answers)
    assert granted <= 9  # 90.00 available at most, before the refund
    # The refund took the worker's 190.00 back: 90.00 - 10.00 x granted - 190.00, and the
    # 100.00 paid out to Stripe was reversed to cover the debt: what is left owed is what
    # the granted payouts reserved.
    earnings = await api.earnings(pro)
    assert earnings["available_balance"] == usd(-1000 * granted)
    assert earnings["pending_payouts"] == usd(1000 * granted)
    assert earnings["total_paid_out"] == "0.00"
    assert earnings["total_earned"] == "0.00"
    async with api.runtime.sessions() as session:
        reversals = (
            await session.execute(
                text("SELECT payout_id, amount, status FROM payout_reversals ORDER BY id")
            )
        ).all()
    assert [tuple(row) for row in reversals] == [(first_payout, 10000, "succeeded")]
    assert await fee_revenue(api, admin) == 0
    await ledger_verify(server)
    print(f"payouts granted before the refund: {granted}")
