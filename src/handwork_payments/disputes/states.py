from __future__ import annotations

from handwork_payments.kit.states import StateMachine
from handwork_payments.models import DisputeStatus, EvidenceStatus

D = DisputeStatus
DISPUTE = StateMachine(
    "dispute",
    {
        D.OPEN: frozenset({D.UNDER_REVIEW, D.RESOLVED, D.CLOSED}),
        D.UNDER_REVIEW: frozenset({D.RESOLVED, D.CLOSED}),
        D.RESOLVED: frozenset({D.CLOSED}),
    },
)

E = EvidenceStatus
# A refused submission may be made again (a new attempt, a new key); a submitted one never.
EVIDENCE = StateMachine(
    "evidence submission",
    {
        E.SUBMITTING: frozenset({E.SUBMITTED, E.FAILED}),
        E.FAILED: frozenset({E.SUBMITTING}),
    },
)
