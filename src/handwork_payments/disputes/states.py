from __future__ import annotations

from handwork_payments.kit.states import StateMachine
from handwork_payments.models import DisputeStatus

D = DisputeStatus
DISPUTE = StateMachine(
    "dispute",
    {
        D.OPEN: frozenset({D.UNDER_REVIEW, D.RESOLVED, D.CLOSED}),
        D.UNDER_REVIEW: frozenset({D.RESOLVED, D.CLOSED}),
        D.RESOLVED: frozenset({D.CLOSED}),
    },
)
