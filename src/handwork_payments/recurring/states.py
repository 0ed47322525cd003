"""Transition table of the recurring schedule's state machine."""

from __future__ import annotations

from handwork_payments.kit.states import StateMachine
from handwork_payments.models import ScheduleStatus

S = ScheduleStatus
SCHEDULE = StateMachine(
    "recurring schedule",
    {
        # The payer saved a method (setup succeeded), or called it off before.
        S.PENDING_SETUP: frozenset({S.ACTIVE, S.CANCELLED}),
        # Paused by its client or an admin, or by dunning after the last retry.
        S.ACTIVE: frozenset({S.PAUSED, S.CANCELLED, S.FINISHED}),
        S.PAUSED: frozenset({S.ACTIVE, S.CANCELLED}),
    },
)
