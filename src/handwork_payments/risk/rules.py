"""The risk rules: each a small named function of the facts gathered for one payment or
payout and the settings, answering a Verdict (the outcome and why) or None when it does
not fire. The service (risk/service.py) gathers the facts, runs every rule and keeps the
strongest outcome; the reasons of all that fired are stored, never shown to the payer."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from handwork_payments.models import RiskLevel
from handwork_payments.settings import Settings


class Outcome(enum.IntEnum):
    """Ordered: the strongest outcome of the rules that fired wins."""

    ALLOW = 0
    REVIEW = 1
    BLOCK = 2

    @property
    def level(self) -> RiskLevel:
        return (RiskLevel.NORMAL, RiskLevel.ELEVATED, RiskLevel.HIGHEST)[self]


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str  # "<rule>: <what it saw>", for admins
    # The provider may say `highest` of a payment we only review.
    level: RiskLevel | None = None


@dataclass(frozen=True)
class PaymentFacts:
    amount: int
    client_registered_at: datetime
    worker_registered_at: datetime
    now: datetime
    payments_last_hour: int  # the client's earlier payments (any status), not this one
    payments_last_day: int
    declines_last_day: int
    largest_earlier: int | None  # the client's largest earlier payment, this currency
    shared_signals: list[str]  # kinds of signal the client and the worker share


@dataclass(frozen=True)
class HoldFacts:
    """What the provider said when it held the money."""

    provider_risk: str | None  # normal | elevated | highest, when it gave a verdict
    card_on_other_client: bool  # another client account paid this worker with this card
    seller_protection: str | None = None  # PayPal's, when it gave one


@dataclass(frozen=True)
class PayoutFacts:
    worker_registered_at: datetime
    now: datetime
    earlier_payouts: int  # not failed
    payouts_last_day: int  # not failed, not this one
    shared_with_client: list[str]  # kinds of signal shared with a client who paid them


def _new(registered_at: datetime, now: datetime, hours: int) -> bool:
    return now - registered_at < timedelta(hours=hours)


def _velocity(
    rule: str, count: int, limit: int, what: str, outcome: Outcome = Outcome.REVIEW
) -> Verdict | None:
    """A rate limit: fires when `count` (this one with the earlier ones) passes `limit`."""
    if count > limit:
        return Verdict(outcome, f"{rule}: {count} {what} > {limit}")
    return None


def client_velocity_hour(f: PaymentFacts, s: Settings) -> Verdict | None:
    limit = s.risk_client_payments_per_hour
    count = f.payments_last_hour + 1
    return _velocity("client_velocity_hour", count, limit, "payments in an hour", Outcome.BLOCK)


def client_velocity_day(f: PaymentFacts, s: Settings) -> Verdict | None:
    limit = s.risk_client_payments_per_day
    return _velocity("client_velocity_day", f.payments_last_day + 1, limit, "payments in a day")


def new_client_new_worker(f: PaymentFacts, s: Settings) -> Verdict | None:
    hours = s.risk_new_account_hours
    if _new(f.client_registered_at, f.now, hours) and _new(f.worker_registered_at, f.now, hours):
        return Verdict(
            Outcome.REVIEW, f"new_client_new_worker: both accounts registered < {hours} h ago"
        )
    return None


def amount_vs_history(f: PaymentFacts, s: Settings) -> Verdict | None:
    multiplier = s.risk_amount_history_multiplier
    if multiplier and f.largest_earlier and f.amount > multiplier * f.largest_earlier:
        return Verdict(
            Outcome.REVIEW,
            f"amount_vs_history: {f.amount} > {multiplier} x the client's largest "
            f"earlier payment ({f.largest_earlier})",
        )
    return None


def repeated_declines(f: PaymentFacts, s: Settings) -> Verdict | None:
    if f.declines_last_day >= s.risk_declines_per_day:
        return Verdict(
            Outcome.REVIEW, f"repeated_declines: {f.declines_last_day} failed payments in a day"
        )
    return None


def same_person(f: PaymentFacts, s: Settings) -> Verdict | None:
    if f.shared_signals:
        shared = ", ".join(f.shared_signals)
        return Verdict(Outcome.REVIEW, f"same_person: client and worker share {shared}")
    return None


# The rules whose verdict is a block (the metrics count an observed one as a block).
BLOCKING_RULES = ("client_velocity_hour",)

PAYMENT_RULES: tuple[Callable[[PaymentFacts, Settings], Verdict | None], ...] = (
    client_velocity_hour,
    client_velocity_day,
    new_client_new_worker,
    amount_vs_history,
    repeated_declines,
    same_person,
)


def provider_verdict(f: HoldFacts) -> Verdict | None:
    """Stripe Radar's risk level on the charge. Radar blocks `highest` itself by default:
    one that got through (the rule turned off) is reviewed, as is `elevated`."""
    if f.provider_risk in (RiskLevel.ELEVATED, RiskLevel.HIGHEST):
        return Verdict(
            Outcome.REVIEW,
            f"provider_verdict: the provider rates it {f.provider_risk}",
            RiskLevel(f.provider_risk),
        )
    return None


def shared_card(f: HoldFacts) -> Verdict | None:
    if f.card_on_other_client:
        return Verdict(
            Outcome.REVIEW, "shared_card: another client account paid this worker with this card"
        )
    return None


def seller_protection(f: HoldFacts) -> Verdict | None:
    """PayPal Seller Protection covers tangible items shipped: a services marketplace is
    NOT_ELIGIBLE as a rule, so it says nothing of fraud and reviewing on it would review
    every PayPal payment. Recorded (an admin reading a review or a chargeback learns that
    the platform bears an unauthorised-payment claim), it changes no outcome."""
    if f.seller_protection in ("NOT_ELIGIBLE", "PARTIALLY_ELIGIBLE"):
        return Verdict(Outcome.ALLOW, f"seller_protection: PayPal says {f.seller_protection}")
    return None


HOLD_RULES: tuple[Callable[[HoldFacts], Verdict | None], ...] = (
    provider_verdict,
    shared_card,
    seller_protection,
)


def first_payout(f: PayoutFacts, s: Settings) -> Verdict | None:
    if f.earlier_payouts == 0:
        return Verdict(Outcome.REVIEW, "first_payout: the worker's first payout")
    return None


def new_worker_payout(f: PayoutFacts, s: Settings) -> Verdict | None:
    days = s.payout_hold_new_worker_days
    if _new(f.worker_registered_at, f.now, days * 24):
        return Verdict(Outcome.REVIEW, f"new_worker_payout: worker registered < {days} days ago")
    return None


def payout_velocity(f: PayoutFacts, s: Settings) -> Verdict | None:
    limit = s.payout_max_per_day
    return _velocity("payout_velocity", f.payouts_last_day + 1, limit, "payouts in a day")


def paid_by_self(f: PayoutFacts, s: Settings) -> Verdict | None:
    if f.shared_with_client:
        shared = ", ".join(f.shared_with_client)
        return Verdict(Outcome.REVIEW, f"paid_by_self: worker shares {shared} with a client")
    return None


PAYOUT_RULES: tuple[Callable[[PayoutFacts, Settings], Verdict | None], ...] = (
    first_payout,
    new_worker_payout,
    payout_velocity,
    paid_by_self,
)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    level: RiskLevel
    reasons: list[str]


def decide(verdicts: list[Verdict | None], earlier: Decision | None = None) -> Decision:
    """The strongest outcome of the verdicts (and of an earlier decision on the same
    object), the highest level, every reason."""
    fired = [v for v in verdicts if v is not None]
    outcome = max([v.outcome for v in fired] + [earlier.outcome if earlier else Outcome.ALLOW])
    levels = [v.level or v.outcome.level for v in fired] + [outcome.level]
    if earlier is not None:
        levels.append(earlier.level)
    order = list(RiskLevel)
    level = max(levels, key=order.index)
    reasons = (earlier.reasons if earlier else []) + [v.reason for v in fired]
    return Decision(outcome, level, reasons)
