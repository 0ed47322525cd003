from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from handwork_payments.bookings.schemas import TermsOut
from handwork_payments.kit.responses import RowOut, major
from handwork_payments.kit.schemas import AmountBody, AmountIn, CurrencyIn, Id, ShortText
from handwork_payments.models import (
    Interval,
    PaymentMethod,
    RecurringRun,
    RecurringSchedule,
    RunStatus,
    ScheduleStatus,
)
from handwork_payments.providers.base import ProviderSetup

# Ten years of weekly runs: a bound, not a product rule.
MAX_OCCURRENCES = 520


class ScheduleCreate(AmountBody):
    worker_id: Id
    title: ShortText
    amount: AmountIn
    currency: CurrencyIn = "USD"
    interval: Interval
    starts_at: AwareDatetime = Field(
        description="The first occurrence; now or in the past: due at once. Monthly ones "
        "keep this day of the month (or the month's last day)."
    )
    occurrences: Annotated[int, Field(ge=1, le=MAX_OCCURRENCES, strict=True)] | None = None
    payment_method: PaymentMethod

    @model_validator(mode="after")
    def _starts_in_range(self) -> ScheduleCreate:
        if not datetime(2000, 1, 1).astimezone() <= self.starts_at <= _FAR:
            raise ValueError("starts_at must lie between 2000 and 2100")
        return self


_FAR = datetime(2100, 1, 1).astimezone()


class SetupOut(BaseModel):
    """Stripe: what Stripe.js `confirmSetup` needs; PayPal: where the payer approves saving
    PayPal (Vault v3). The secret and the URL are shown while the setup is pending."""

    setup_intent_id: str | None = None
    client_secret: str | None = None
    approval_url: str | None = None

    @classmethod
    def of(cls, schedule: RecurringSchedule, setup: ProviderSetup | None) -> SetupOut | None:
        if not schedule.setup_id:
            return None
        shown = setup if schedule.status == ScheduleStatus.PENDING_SETUP else None
        if schedule.payment_method == PaymentMethod.PAYPAL:
            return cls(approval_url=shown.approval_url if shown is not None else None)
        return cls(
            setup_intent_id=schedule.setup_id,
            client_secret=shown.client_secret if shown is not None else None,
        )


class RunOut(RowOut):
    number: int
    due_at: datetime
    status: RunStatus
    attempts: int
    booking_id: int | None
    payment_id: int | None
    last_error: str | None

    @classmethod
    def of(cls, run: RecurringRun) -> RunOut:
        return cls.from_row(run)


class ScheduleOut(TermsOut):
    interval: Interval
    starts_at: datetime
    occurrences: int | None
    payment_method: PaymentMethod
    status: ScheduleStatus
    next_run_at: datetime | None
    setup: SetupOut | None
    runs: list[RunOut]
    created_at: datetime

    @classmethod
    def of(
        cls,
        schedule: RecurringSchedule,
        runs: list[RecurringRun],
        setup: ProviderSetup | None = None,
    ) -> ScheduleOut:
        return cls.from_row(
            schedule,
            amount=major(schedule.amount, schedule.currency),
            setup=SetupOut.of(schedule, setup),
            runs=[RunOut.of(run) for run in runs],
        )
