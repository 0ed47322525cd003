from __future__ import annotations

from handwork_payments.kit.states import StateMachine
from handwork_payments.models import PayoutStatus

# Holds are not statuses: `held_reason` parks a pending or processing payout where it is
# (holds.py). A held payout is never processed, sent, re-queried or settled by itself; an
# admin's hold (`admin`) is taken only before the provider was ever called, so rejecting
# a held payout (processing -> failed) never returns money the provider may have paid.

W = PayoutStatus
PAYOUT = StateMachine(
    "payout",
    {
        # Failed before it was sent: an admin rejected it (controls.py), or a risk review
        # did (risk/decisions.py); its reserved amount goes back to available.
        W.PENDING: frozenset({W.PROCESSING, W.FAILED}),
        W.PROCESSING: frozenset({W.COMPLETED, W.FAILED}),
        # The provider returned a payout it had completed (PayPal RETURNED, a reversed
        # Stripe transfer): the money is back on the platform and goes back to the worker.
        W.COMPLETED: frozenset({W.FAILED}),
    },
)
