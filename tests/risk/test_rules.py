"""Each rule firing and not firing, on facts built by hand (no database), under the
default settings: the thresholds a fresh installation enforces."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from handwork_payments.models import RiskLevel
from handwork_payments.risk import rules
from handwork_payments.risk.rules import Decision, Outcome, Verdict
from handwork_payments.settings import Settings
from tests.conftest import make_settings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=90)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return make_settings("postgresql://unused/db")


def quiet_payment(**changes: object) -> rules.PaymentFacts:
    """A payment no rule fires on: seasoned accounts, a modest amount, a quiet client."""
    facts = rules.PaymentFacts(
        amount=15_000,
        client_registered_at=OLD,
        worker_registered_at=OLD,
        now=NOW,
        payments_last_hour=0,
        payments_last_day=0,
        declines_last_day=0,
        largest_earlier=10_000,
        shared_signals=[],
    )
    return replace(facts, **changes)  # type: ignore[arg-type]


def quiet_payout(**changes: object) -> rules.PayoutFacts:
    facts = rules.PayoutFacts(
        worker_registered_at=OLD,
        now=NOW,
        earlier_payouts=4,
        payouts_last_day=0,
        shared_with_client=[],
    )
    return replace(facts, **changes)  # type: ignore[arg-type]


def test_the_defaults(settings: Settings) -> None:
    assert settings.risk_mode_effective == "observe"  # development
    assert make_settings(
        "postgresql://unused/db", handwork_env="production"
    ).risk_mode_effective == ("enforce")
    assert (settings.risk_client_payments_per_hour, settings.risk_new_account_hours) == (10, 24)


def test_a_quiet_payment_fires_nothing(settings: Settings) -> None:
    decision = rules.decide([rule(quiet_payment(), settings) for rule in rules.PAYMENT_RULES])
    assert decision == Decision(Outcome.ALLOW, RiskLevel.NORMAL, [])


def test_client_velocity_hour_blocks_the_eleventh_payment(settings: Settings) -> None:
    assert rules.client_velocity_hour(quiet_payment(payments_last_hour=9), settings) is None
    verdict = rules.client_velocity_hour(quiet_payment(payments_last_hour=10), settings)
    assert verdict == Verdict(Outcome.BLOCK, "client_velocity_hour: 11 payments in an hour > 10")


def test_only_the_blocking_rules_block(settings: Settings) -> None:
    busy = quiet_payment(
        payments_last_hour=99, payments_last_day=99, declines_last_day=99, shared_signals=["ip"]
    )
    blocking = [
        v.reason.split(":")[0]
        for rule in rules.PAYMENT_RULES
        if (v := rule(busy, settings)) is not None and v.outcome == Outcome.BLOCK
    ]
    assert tuple(blocking) == rules.BLOCKING_RULES


def test_client_velocity_day_reviews(settings: Settings) -> None:
    assert rules.client_velocity_day(quiet_payment(payments_last_day=29), settings) is None
    verdict = rules.client_velocity_day(quiet_payment(payments_last_day=30), settings)
    assert verdict == Verdict(Outcome.REVIEW, "client_velocity_day: 31 payments in a day > 30")


def test_new_client_new_worker_needs_both_new(settings: Settings) -> None:
    fresh = NOW - timedelta(hours=23, minutes=59)
    day_old = NOW - timedelta(hours=24)
    both = quiet_payment(client_registered_at=fresh, worker_registered_at=fresh)
    assert rules.new_client_new_worker(both, settings) == Verdict(
        Outcome.REVIEW, "new_client_new_worker: both accounts registered < 24 h ago"
    )
    for client_at, worker_at in ((fresh, OLD), (OLD, fresh), (day_old, fresh)):
        facts = quiet_payment(client_registered_at=client_at, worker_registered_at=worker_at)
        assert rules.new_client_new_worker(facts, settings) is None


def test_amount_vs_history(settings: Settings) -> None:
    assert rules.amount_vs_history(quiet_payment(amount=50_000), settings) is None  # 5x
    assert rules.amount_vs_history(quiet_payment(largest_earlier=None), settings) is None
    verdict = rules.amount_vs_history(quiet_payment(amount=50_001), settings)
    assert verdict is not None and verdict.outcome == Outcome.REVIEW
    assert verdict.reason.startswith("amount_vs_history: 50001 > 5 x")
    off = make_settings("postgresql://unused/db", risk_amount_history_multiplier=0)
    assert rules.amount_vs_history(quiet_payment(amount=10**9), off) is None


def test_repeated_declines(settings: Settings) -> None:
    assert rules.repeated_declines(quiet_payment(declines_last_day=2), settings) is None
    verdict = rules.repeated_declines(quiet_payment(declines_last_day=3), settings)
    assert verdict == Verdict(Outcome.REVIEW, "repeated_declines: 3 failed payments in a day")


def test_same_person(settings: Settings) -> None:
    assert rules.same_person(quiet_payment(), settings) is None
    verdict = rules.same_person(quiet_payment(shared_signals=["destination", "ip"]), settings)
    assert verdict == Verdict(
        Outcome.REVIEW, "same_person: client and worker share destination, ip"
    )


def test_provider_verdict() -> None:
    for level in (None, "normal"):
        assert rules.provider_verdict(rules.HoldFacts(level, False)) is None
    elevated = rules.provider_verdict(rules.HoldFacts("elevated", False))
    assert elevated == Verdict(
        Outcome.REVIEW, "provider_verdict: the provider rates it elevated", RiskLevel.ELEVATED
    )
    highest = rules.provider_verdict(rules.HoldFacts("highest", False))
    assert highest is not None and highest.level == RiskLevel.HIGHEST


def test_shared_card() -> None:
    assert rules.shared_card(rules.HoldFacts(None, False)) is None
    verdict = rules.shared_card(rules.HoldFacts(None, True))
    assert verdict is not None and verdict.outcome == Outcome.REVIEW


def test_seller_protection_is_recorded_not_acted_on() -> None:
    for status in (None, "ELIGIBLE"):
        assert rules.seller_protection(rules.HoldFacts(None, False, status)) is None
    verdict = rules.seller_protection(rules.HoldFacts(None, False, "NOT_ELIGIBLE"))
    assert verdict == Verdict(Outcome.ALLOW, "seller_protection: PayPal says NOT_ELIGIBLE")
    earlier = Decision(Outcome.ALLOW, RiskLevel.NORMAL, [])
    assert rules.decide([verdict], earlier) == Decision(
        Outcome.ALLOW, RiskLevel.NORMAL, ["seller_protection: PayPal says NOT_ELIGIBLE"]
    )


def test_payout_rules(settings: Settings) -> None:
    assert [rule(quiet_payout(), settings) for rule in rules.PAYOUT_RULES] == [None] * 4
    assert rules.first_payout(quiet_payout(earlier_payouts=0), settings) == Verdict(
        Outcome.REVIEW, "first_payout: the worker's first payout"
    )
    recent = quiet_payout(worker_registered_at=NOW - timedelta(days=6, hours=23))
    assert rules.new_worker_payout(recent, settings) == Verdict(
        Outcome.REVIEW, "new_worker_payout: worker registered < 7 days ago"
    )
    week_old = quiet_payout(worker_registered_at=NOW - timedelta(days=7))
    assert rules.new_worker_payout(week_old, settings) is None
    assert rules.payout_velocity(quiet_payout(payouts_last_day=2), settings) is None
    assert rules.payout_velocity(quiet_payout(payouts_last_day=3), settings) == Verdict(
        Outcome.REVIEW, "payout_velocity: 4 payouts in a day > 3"
    )
    shared = rules.paid_by_self(quiet_payout(shared_with_client=["ip"]), settings)
    assert shared == Verdict(Outcome.REVIEW, "paid_by_self: worker shares ip with a client")


def test_decide_keeps_the_strongest_and_every_reason() -> None:
    review = Verdict(Outcome.REVIEW, "a")
    block = Verdict(Outcome.BLOCK, "b")
    assert rules.decide([review, None, block]) == Decision(
        Outcome.BLOCK, RiskLevel.HIGHEST, ["a", "b"]
    )
    earlier = Decision(Outcome.REVIEW, RiskLevel.ELEVATED, ["a"])
    radar = Verdict(Outcome.REVIEW, "r", RiskLevel.HIGHEST)
    assert rules.decide([radar], earlier) == Decision(Outcome.REVIEW, RiskLevel.HIGHEST, ["a", "r"])
    assert rules.decide([None], None) == Decision(Outcome.ALLOW, RiskLevel.NORMAL, [])
