from __future__ import annotations

from fastapi import APIRouter

from handwork_payments.http.amounts import minor_units
from handwork_payments.http.deps import CurrentUser, RuntimeDep
from handwork_payments.http.responses import REFUNDING
from handwork_payments.payments import refunds
from handwork_payments.payments.endpoints import present, with_booking
from handwork_payments.payments.schemas import PaymentOut, RefundCreate

router = APIRouter(prefix="/payments", tags=["refunds"])


@router.post("/refund", response_model=PaymentOut, responses=REFUNDING)
async def refund_payment(body: RefundCreate, user: CurrentUser, runtime: RuntimeDep) -> PaymentOut:
    amount = None
    if body.amount is not None:
        async with runtime.sessions() as session:
            payment, booking = await with_booking(session, body.payment_id)
        # Before the amount, whose precision depends on the payment's currency: a
        # stranger must learn nothing of the payment, not even that it exists.
        refunds.check_may_refund(user, booking)
        amount = minor_units("amount", body.amount, payment.currency)
    payment = await refunds.refund(
        runtime,
        body.payment_id,
        actor=user,
        amount=amount,
        reason=body.reason,
        milestone_id=body.milestone_id,
    )
    return await present(payment, user, runtime)
