"""All ORM models; importing this package registers every table on Base.metadata."""

from handwork_payments.models.base import Base
from handwork_payments.models.bookings import Booking, BookingStatus
from handwork_payments.models.connect import PayoutReversal, ReversalStatus
from handwork_payments.models.events import EventStatus, MarketplaceEvent
from handwork_payments.models.evidence import DisputeEvidence, EvidenceStatus
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
    Wallet,
)
from handwork_payments.models.payouts import PayoutStatus, WorkerPayout
from handwork_payments.models.recurring import (
    Interval,
    RecurringRun,
    RecurringSchedule,
    RunStatus,
    ScheduleStatus,
)
from handwork_payments.models.risk import (
    ReviewObject,
    ReviewStatus,
    RiskLevel,
    RiskReview,
    RiskSignal,
    SignalKind,
)
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
    "DisputeEvidence",
    "DisputeOutcome",
    "DisputeStatus",
    "EventStatus",
    "EvidenceStatus",
    "HoldKind",
    "IdempotencyRecord",
    "Interval",
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
    "RecurringRun",
    "RecurringSchedule",
    "RefundKind",
    "RefundStatus",
    "ReversalStatus",
    "ReviewObject",
    "ReviewStatus",
    "RiskLevel",
    "RiskReview",
    "RiskSignal",
    "Role",
    "RunStatus",
    "ScheduleStatus",
    "SignalKind",
    "SimulatedObject",
    "TransactionType",
    "User",
    "UserStatus",
    "Wallet",
    "WebhookDelivery",
    "WorkerPayout",
    "WorkerWriteOff",
]
