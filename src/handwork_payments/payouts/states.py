from __future__ import annotations

from handwork_payments.kit.states import StateMachine
from handwork_payments.models import PayoutStatus

W = PayoutStatus
PAYOUT = StateMachine(
    "payout",
    {
        # Failed before it was sent: a risk review rejected it (its amount goes back).
        W.PENDING: frozenset({W.PROCESSING, W.FAILED}),
        W.PROCESSING: frozenset({W.COMPLETED, W.FAILED}),
        # The provider returned a payout it had completed (PayPal RETURNED, a reversed
        # Stripe transfer): the money is back on the platform and goes back to the worker.
        W.COMPLETED: frozenset({W.FAILED}),
    },
)
