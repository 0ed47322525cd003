"""The provider call in flight for a payment (`payments.provider_operation`).

Set and committed before the call, cleared when its outcome is applied: every other move
of the payment waits (409) until then, and a call that never answered is resumed by the
resolver with the same idempotency key. Stored as text ("capture", "reauthorize",
"refund:12"); this module is the only place that writes or reads that text."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class OperationKind(enum.StrEnum):
    CAPTURE = "capture"
    REAUTHORIZE = "reauthorize"
    REFUND = "refund"


@dataclass(frozen=True)
class Operation:
    kind: OperationKind
    refund_id: int | None = None  # set for (and only for) a refund

    def __post_init__(self) -> None:
        assert (self.kind is OperationKind.REFUND) == (self.refund_id is not None), self

    def __str__(self) -> str:
        if self.kind is OperationKind.REFUND:
            return f"{self.kind}:{self.refund_id}"
        return str(self.kind)

    @classmethod
    def parse(cls, stored: str | None) -> Operation | None:
        if stored is None:
            return None
        kind, _, refund_id = stored.partition(":")
        return cls(OperationKind(kind), int(refund_id) if refund_id else None)


CAPTURE = Operation(OperationKind.CAPTURE)
REAUTHORIZE = Operation(OperationKind.REAUTHORIZE)


def refund(refund_id: int) -> Operation:
    return Operation(OperationKind.REFUND, refund_id)
