"""The double-entry ledger: accounts with balance rows, append-only entries and postings."""

from __future__ import annotations

import enum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import Base, CreatedAt, Currency, IdPk, Minor, enum_check


class AccountKind(enum.StrEnum):
    # Counterpart of money at a provider: its balance is minus what the platform holds there.
    PROVIDER_CLEARING = "provider_clearing"
    ESCROW = "escrow"  # per payment
    WORKER_AVAILABLE = "worker_available"  # per worker and currency
    WORKER_PAYOUT_RESERVED = "worker_payout_reserved"  # per worker and currency
    PLATFORM_FEE_REVENUE = "platform_fee_revenue"  # per currency
    # Costs, per provider and currency / per currency. Booked against clearing or a
    # worker's balance, they go negative as costs grow (revenue goes positive).
    PROVIDER_FEES = "provider_fees"
    PLATFORM_LOSSES = "platform_losses"


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (CheckConstraint(enum_check("kind", AccountKind), name="kind"),)

    id: Mapped[IdPk]
    # "escrow:12:USD", "worker_available:7:USD", "provider_clearing:stripe:USD", ...
    code: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[AccountKind] = mapped_column(String(32))
    owner_id: Mapped[int | None] = mapped_column(BigInteger)  # payment or user id
    currency: Mapped[Currency]
    # Sum of this account's postings, updated in the same transaction as they are written,
    # so reading a balance never scans the ledger. `ledger verify` recomputes it.
    balance: Mapped[Minor] = mapped_column(default=0)


class JournalEntry(Base):
    __tablename__ = "journal_entries"

    id: Mapped[IdPk]
    # Names the movement ("payment-12-release"); unique, so one movement is posted once.
    key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(Text)
    payment_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("payments.id"), index=True
    )
    payout_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("worker_payouts.id"), index=True
    )
    created_at: Mapped[CreatedAt]


class Posting(Base):
    __tablename__ = "postings"
    __table_args__ = (CheckConstraint("amount <> 0", name="amount_non_zero"),)

    id: Mapped[IdPk]
    entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("journal_entries.id"), index=True)
    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_accounts.id"), index=True
    )
    # Signed: positive adds to the account's balance.
    amount: Mapped[Minor]
    currency: Mapped[Currency]


class TransactionType(enum.StrEnum):
    PAYMENT = "payment"
    EARNING = "earning"
    PAYOUT = "payout"
    REFUND = "refund"
    FEE = "fee"


class PaymentTransaction(Base):
    """The user-facing history (the seed's model), written beside each journal entry.
    Amounts are signed from the user's side: what reaches them is positive. Fee rows
    belong to the platform (user_id null)."""

    __tablename__ = "payment_transactions"
    __table_args__ = (
        CheckConstraint(enum_check("transaction_type", TransactionType), name="transaction_type"),
    )

    id: Mapped[IdPk]
    user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("payments.id"))
    payout_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("worker_payouts.id"))
    journal_entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("journal_entries.id"))
    transaction_type: Mapped[TransactionType] = mapped_column(String(16))
    amount: Mapped[Minor]
    currency: Mapped[Currency]
    description: Mapped[str] = mapped_column(Text)
    reference_id: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[CreatedAt]
