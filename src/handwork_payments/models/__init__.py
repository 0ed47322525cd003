"""All ORM models; importing this package registers every table on Base.metadata."""

from handwork_payments.models.base import Base
from handwork_payments.models.bookings import Booking, BookingStatus
from handwork_payments.models.connect import PayoutReversal, ReversalStatus
from handwork_payments.models.events import EventStatus, MarketplaceEvent
from handwork_payments.models.ledger import (
    AccountKind,
    JournalEntry,
    LedgerAccount,
    PaymentTransaction,
    Posting,
    TransactionType,
)
from handwork_payments.models.limits import RateLimitCounter
from handwork_payments.models.losses import WorkerWriteOff
from handwork_payments.models.milestones import Milestone, MilestoneStatus
from handwork_payments.models.operations import (
    Alert,
    AlertStatus,
    AuditChainHead,
    AuditLog,
    DeliveryStatus,
    IdempotencyRecord,
    SimulatedObject,
    WebhookDelivery,
)
from handwork_payments.models.payments import (
    DisputeOutcome,
    DisputeStatus,
    HoldKind,
    Payment,
    PaymentDispute,
    PaymentMethod,
    PaymentRefund,
    PaymentStatus,
    RefundKind,
    RefundStatus,
)
from handwork_payments.models.payouts import PayoutStatus, WorkerPayout
from handwork_payments.models.users import Role, User, UserStatus

__all__ = [
    "AccountKind",
    "Alert",
    "AlertStatus",
    "AuditChainHead",
    "AuditLog",
    "Base",
    "Booking",
    "BookingStatus",
    "DeliveryStatus",
    "DisputeOutcome",
    "DisputeStatus",
    "EventStatus",
    "HoldKind",
    "IdempotencyRecord",
    "JournalEntry",
    "LedgerAccount",
    "MarketplaceEvent",
    "Milestone",
    "MilestoneStatus",
    "Payment",
    "PaymentDispute",
    "PaymentMethod",
    "PaymentRefund",
    "PaymentStatus",
    "PaymentTransaction",
    "PayoutReversal",
    "PayoutStatus",
    "Posting",
    "RateLimitCounter",
    "RefundKind",
    "RefundStatus",
    "ReversalStatus",
    "Role",
    "SimulatedObject",
    "TransactionType",
    "User",
    "UserStatus",
    "WebhookDelivery",
    "WorkerPayout",
    "WorkerWriteOff",
]
