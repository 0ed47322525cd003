"""Transition tables of the payment and booking state machines."""

from __future__ import annotations

from handwork_payments.kit.states import StateMachine
from handwork_payments.models import BookingStatus, PaymentStatus

P = PaymentStatus
PAYMENT = StateMachine(
    "payment",
    {
        P.PENDING: frozenset({P.HELD, P.FAILED}),
        P.HELD: frozenset({P.RELEASED, P.REFUNDED, P.DISPUTED}),
        # A resolved dispute releases, refunds, or (an admin's call) returns to held.
        P.DISPUTED: frozenset({P.RELEASED, P.REFUNDED, P.HELD}),
        # A full refund after release (partial ones keep the status).
        P.RELEASED: frozenset({P.REFUNDED}),
    },
)

B = BookingStatus
BOOKING = StateMachine(
    "booking",
    {
        B.PENDING_PAYMENT: frozenset({B.PAID, B.CANCELLED}),
        B.PAID: frozenset({B.COMPLETED, B.CLOSED, B.CANCELLED}),
        B.COMPLETED: frozenset({B.CLOSED, B.CANCELLED}),
    },
)
