"""The one protocol every provider adapter implements, and the types crossing it.

Services never import an SDK: adapters translate provider objects and statuses into these
types at the edge. Every call that moves money takes an idempotency key derived from our
own ids (`payment-{id}-capture`, `payout-{id}`), so calling again after a timeout is safe;
the adapter sends it, and every other reference of ours, under this installation's prefix
(`ProviderIds`). Amounts are integer minor units.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from handwork_payments.providers.currencies import CurrencyRules


class ProviderError(Exception):
    """The provider answered and refused (a definitive outcome)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class PaymentDeclinedError(ProviderError):
    """The payer's bank or wallet declined; `code` is the decline code."""


class ProviderUnavailableError(Exception):
    """No answer (timeout, connection error, 5xx): the outcome is unknown. The caller keeps
    its in-flight marker and resolves it by asking again with the same idempotency key."""


class UnlinkedDuplicateBatchError(ProviderUnavailableError):
    """PayPal refused a batch as a duplicate of its sender_batch_id without saying which
    batch that is: it may be paid, and PayPal has no look-up by sender_batch_id."""


class InvalidSignatureError(Exception):
    """A webhook whose signature does not prove it came from the provider."""


def event_object(body: bytes, not_json: str, not_object: str) -> dict[str, Any]:
    """A delivery's JSON object; anything else (not JSON, nested past the parser's depth,
    not an object) is refused as not an event, in the provider adapter's words."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidSignatureError(not_json) from exc
    if not isinstance(event, dict):
        raise InvalidSignatureError(not_object)
    return event


PROVIDER_ID_PREFIX_PATTERN = r"^[A-Za-z0-9]{1,24}$"
_PREFIXED = re.compile(r"^([A-Za-z0-9]{1,24})-(.+)$")
# What we sent before prefixes existed: applied by the provider's object id alone, as then,
# so payments and payouts in flight across the upgrade still settle.
_UNPREFIXED = re.compile(r"^(payment|payout|booking|worker|connect)-")


@dataclass(frozen=True)
class ProviderIds:
    """This installation's provider-facing ids: every key and reference we send a provider
    (idempotency keys, PayPal-Request-Id, custom_id / invoice_id, sender_batch_id /
    sender_item_id, transfer_group, metadata) is `{prefix}-{local}`, so two installations
    sharing one provider account (staging and production, a database restored or recreated)
    never answer each other's calls. The domain speaks local ids (`payout-7`); adapters
    translate at the edge, both ways."""

    prefix: str

    def __post_init__(self) -> None:
        if not re.match(PROVIDER_ID_PREFIX_PATTERN, self.prefix):
            raise ValueError(f"a provider id prefix is 1-24 letters or digits: {self.prefix!r}")

    @classmethod
    def configured(cls, prefix: str | None) -> ProviderIds:
        """From PROVIDER_ID_PREFIX, for an adapter built outside build_providers (tests,
        tools); a running service passes the installation's ids instead."""
        if not prefix:
            raise ValueError("PROVIDER_ID_PREFIX is unset: pass the installation's ids")
        return cls(prefix)

    def key(self, local: str) -> str:
        """What the provider is sent for our `local` id."""
        return f"{self.prefix}-{local}"

    def local(self, external: object) -> str | None:
        """Our local id from what the provider echoes back; None when it is not ours
        (another installation's prefix, no prefix, not a string)."""
        if not isinstance(external, str):
            return None
        match = _PREFIXED.match(external)
        return match.group(2) if match and match.group(1) == self.prefix else None

    def foreign(self, external: object) -> bool:
        """A reference under another prefix: another installation's object, to be recorded
        and never applied. An unprefixed one of ours from before prefixes is not foreign."""
        if not isinstance(external, str) or not external or _UNPREFIXED.match(external):
            return False
        return self.local(external) is None


class HoldState(enum.StrEnum):
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"  # created, nothing chosen yet
    REQUIRES_APPROVAL = "requires_approval"  # PayPal: the payer has not approved yet
    REQUIRES_ACTION = "requires_action"  # 3-D Secure or similar pending
    AUTHORIZED = "authorized"  # money reserved on the payer's card / account
    CAPTURED = "captured"
    CANCELED = "canceled"
    FAILED = "failed"


@dataclass(frozen=True)
class NewHold:
    """What create_hold asks for: each provider uses the parts it takes (Stripe the
    payment method, PayPal the redirect URLs)."""

    payment_id: int
    booking_id: int
    amount: int
    currency: str
    payment_method: str | None = None
    return_url: str | None = None
    cancel_url: str | None = None
    # Stripe's stablecoin payments (payment method type `crypto`): no manual capture, so
    # the intent captures when the payer completes it (a CAPTURED hold).
    stablecoin: bool = False
    # A recurring charge: the saved `payment_method` of this provider customer, charged
    # with the payer absent (Stripe: `off_session`); a bank asking for authentication
    # declines it (code `authentication_required`).
    customer: str | None = None


@dataclass(frozen=True)
class HoldRef:
    """What identifies a hold at the provider: the intent or order, and PayPal's
    authorisation / capture once there are any."""

    provider_payment_id: str
    authorization_id: str | None = None
    capture_id: str | None = None


@dataclass(frozen=True)
class ProviderHold:
    provider_payment_id: str
    state: HoldState
    amount: int
    currency: str
    client_secret: str | None = None
    approval_url: str | None = None
    authorization_id: str | None = None
    capture_id: str | None = None
    captured_amount: int = 0
    refunded_amount: int = 0
    capture_by: datetime | None = None
    failure_message: str | None = None
    # CAPTURED: the provider's processing fee on the capture, as it reported it
    fee: int | None = None
    # The card wallet the payer used (Stripe: apple_pay, google_pay, link), when known
    wallet: str | None = None
    # The provider's fraud verdict where it gives one (Stripe Radar's `risk_level` on the
    # charge): normal | elevated | highest; None when it gave none.
    risk_level: str | None = None
    # The card's fingerprint at the provider (the same card on any account gives the same).
    card_fingerprint: str | None = None
    # PayPal Seller Protection of the authorisation or capture: ELIGIBLE, PARTIALLY_ELIGIBLE
    # or NOT_ELIGIBLE (who bears an "unauthorised payment" claim).
    seller_protection: str | None = None


@dataclass(frozen=True)
class ProviderCapture:
    capture_id: str
    amount: int
    # The provider's processing fee (Stripe: the charge's balance transaction `fee`; PayPal:
    # `seller_receivable_breakdown.paypal_fee`); None when the provider did not say.
    fee: int | None = None
    currency: str | None = None  # when the provider's answer says

    def mismatch(self, amount: int, currency: str) -> str | None:
        """Why this capture (found under our key) is not the one we asked for, or None."""
        problems = []
        if self.amount != amount:
            problems.append(f"amount {self.amount} != {amount}")
        if self.currency and self.currency.upper() != currency.upper():
            problems.append(f"currency {self.currency} != {currency}")
        return "; ".join(problems) or None


@dataclass(frozen=True)
class ProviderRefund:
    refund_id: str
    amount: int
    # What the provider gave back of its capture fee with this refund (0 under Stripe's and
    # PayPal's current rules; read from their answer, never assumed).
    fee_refunded: int = 0


class TransferState(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class ProviderTransfer:
    """A payout to a worker: a Stripe Connect transfer or a PayPal payout item."""

    transfer_id: str
    state: TransferState
    amount: int
    currency: str
    batch_id: str | None = None
    failure_reason: str | None = None
    # Where it went (connected account id, PayPal receiver), when the provider says.
    destination: str | None = None


@dataclass(frozen=True)
class PayoutOrder:
    payout_id: int
    destination: str  # connected account id or PayPal email
    amount: int
    currency: str

    @property
    def idempotency_key(self) -> str:
        """Local: the adapter sends it under the installation's prefix (ProviderIds.key)."""
        return f"payout-{self.payout_id}"

    def mismatch(self, transfer: ProviderTransfer) -> str | None:
        """Why a transfer found under this order's key is not this payout (another
        installation's, or ours from before a database was restored), or None. A transfer
        the provider has not itemised yet (no id) says nothing of the money: None."""
        if not transfer.transfer_id:
            return None
        problems = []
        if transfer.amount != self.amount:
            problems.append(f"amount {transfer.amount} != {self.amount}")
        if transfer.currency and transfer.currency.upper() != self.currency.upper():
            problems.append(f"currency {transfer.currency} != {self.currency}")
        if transfer.destination and transfer.destination.lower() != self.destination.lower():
            problems.append(f"destination {transfer.destination} != {self.destination}")
        return "; ".join(problems) or None


class EventKind(enum.StrEnum):
    """What a provider event means to us, whatever the provider called it."""

    HOLD_AUTHORIZED = "hold_authorized"
    HOLD_FAILED = "hold_failed"
    HOLD_CANCELED = "hold_canceled"
    CAPTURED = "captured"
    REFUNDED = "refunded"
    DISPUTE_OPENED = "dispute_opened"
    DISPUTE_CLOSED = "dispute_closed"
    PAYOUT_SUCCEEDED = "payout_succeeded"
    PAYOUT_FAILED = "payout_failed"
    # Still on its way but stuck (PayPal: UNCLAIMED, HELD): neither paid nor returned yet.
    PAYOUT_DELAYED = "payout_delayed"
    # Stripe Connect: (part of) a transfer to a worker's account taken back.
    TRANSFER_REVERSED = "transfer_reversed"
    ACCOUNT_UPDATED = "account_updated"
    # A payer's method saved for off-session charges (Stripe SetupIntent succeeded).
    SETUP_SUCCEEDED = "setup_succeeded"
    IGNORED = "ignored"


class ChargebackOutcome(enum.StrEnum):
    """How the payer's bank (or PayPal) decided a chargeback, for the money."""

    WON = "won"  # the seller keeps the money (won, or an inquiry closed without a chargeback)
    LOST = "lost"  # the payer gets the disputed amount back
    UNKNOWN = "unknown"  # closed, but the provider did not say which


@dataclass(frozen=True)
class ProviderEvent:
    """A verified webhook event, translated: every field the domain reads is typed here, in
    our terms. `data` is the resource as delivered, kept for the audit trail only: no code
    outside the adapters reads a provider's field names.

    `object_id` is the provider id our rows store (intent / order id for payments, transfer /
    payout item id for payouts, account id). Amounts are integer minor units."""

    provider: str
    event_id: str
    event_type: str  # the provider's own name, e.g. "payment_intent.succeeded" (for logs)
    kind: EventKind
    object_id: str | None
    data: Mapping[str, Any] = field(default_factory=dict)
    # PayPal: the delivery's PAYPAL-TRANSMISSION-ID, set when it is received and verified
    # (about the delivery, not the event: not compared)
    transmission_id: str | None = field(default=None, compare=False)
    amount: int | None = None
    failure_message: str | None = None
    # holds: the authorisation, when it lapses, why it was canceled
    authorization_id: str | None = None
    capture_by: datetime | None = None
    cancellation_reason: str | None = None
    # captures: the capture (Stripe: the charge) and what it took; None when not said
    capture_id: str | None = None
    captured_amount: int | None = None
    fee: int | None = None  # the provider's fee on the capture, when the event carries it
    # refunds: the capture's running refunded total (Stripe's `amount_refunded`), or one
    # refund (or reversal) by its own id and amount (PayPal)
    refunded_total: int | None = None
    refund_id: str | None = None
    refund_amount: int | None = None
    reversal: bool = False  # the provider or the payer's bank took the money back
    # chargebacks: `dispute_detail` is the provider's word for the outcome, for the notes
    dispute_id: str | None = None
    dispute_outcome: ChargebackOutcome | None = None
    dispute_detail: str | None = None
    # the provider's dispute fee so far, net of any it returned (Stripe); None: not said
    dispute_fee: int | None = None
    # payouts: the batch (PayPal), our own ids echoed back, what the item pays
    transfer_batch_id: str | None = None
    payout_id: int | None = None  # ours, from the reference we set ("payout-{id}")
    batch_key: str | None = None  # ours, the batch's idempotency key
    currency: str | None = None
    delayed_reason: str | None = None  # PAYOUT_DELAYED: "unclaimed", "held"
    # transfer reversals (Stripe Connect)
    reversed_amount: int | None = None
    reversed_in_full: bool = False
    # connected accounts
    payouts_enabled: bool | None = None


class PaymentProvider(Protocol):
    name: str  # "stripe" | "paypal"
    live: bool  # False for the built-in simulator
    # What the provider accepts (providers/currencies.py): checked before every call, and
    # enforced by the simulators as the provider would.
    currency_rules: CurrencyRules

    async def create_hold(self, hold: NewHold, *, idempotency_key: str) -> ProviderHold:
        """Stripe: a manual-capture PaymentIntent (confirmed at once when a payment method
        is given). PayPal: an order with intent AUTHORIZE and its approval URL."""
        ...

    async def confirm_hold(
        self, *, provider_payment_id: str, payer_id: str | None, idempotency_key: str
    ) -> ProviderHold:
        """Bring the hold to AUTHORIZED if the payer has done their part: Stripe retrieves
        (and confirms) the intent, PayPal authorises the approved order."""
        ...

    async def get_hold(self, ref: HoldRef) -> ProviderHold: ...

    async def capture(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderCapture:
        """Final capture of `amount` (the rest of the authorisation is released)."""
        ...

    async def cancel(self, *, ref: HoldRef, idempotency_key: str) -> None:
        """Void the whole authorisation."""
        ...

    async def refund(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderRefund:
        """Refund captured money to the payer."""
        ...

    async def send_payout(self, order: PayoutOrder) -> ProviderTransfer: ...

    async def find_payout(self, order: PayoutOrder) -> ProviderTransfer | None:
        """The payout made under `order.idempotency_key`, or None if the provider has none:
        how a payout whose call timed out is resolved without paying twice."""
        ...

    async def parse_event(self, headers: Mapping[str, str], body: bytes) -> ProviderEvent:
        """Verify the webhook's signature (raising InvalidSignatureError) and translate it
        (PayPal's verification may call the provider). Done once, when a delivery arrives."""
        ...

    async def translate_event(self, body: bytes) -> ProviderEvent:
        """Translate a delivery verified when it arrived, without verifying it again: the
        inbox processes (and retries, and replays) stored deliveries long after Stripe's
        signature tolerance has passed. Raises InvalidSignatureError for a body that is
        not one of this provider's events."""
        ...


class ConnectProvider(Protocol):
    """Stripe Connect only: where workers' Stripe payouts go."""

    async def create_connected_account(self, *, worker_id: int, email: str) -> str:
        """An Express account for the worker (idempotency key `connect-account-{worker_id}`);
        returns its `acct_...` id."""
        ...

    async def create_account_link(
        self, *, account_id: str, refresh_url: str, return_url: str
    ) -> str:
        """An onboarding Account Link URL for the account."""
        ...

    async def reverse_transfer(
        self, *, transfer_id: str, amount: int, idempotency_key: str
    ) -> ProviderRefund:
        """Take back (part of) a transfer from the connected account; raises ProviderError
        when the account's balance cannot cover it."""
        ...


# --- optional capabilities: checked with isinstance, used where a provider has them ------


@runtime_checkable
class PayoutBatchProvider(Protocol):
    """PayPal Payouts: many workers paid in one request (Stripe transfers go one by one)."""

    async def send_payout_batch(
        self, orders: Sequence[PayoutOrder], batch_key: str
    ) -> list[ProviderTransfer]:
        """Pay every order in one batch. `batch_key` (our ids, `payout-batch-{id}`) is the
        idempotency key and the batch's own reference: sending the same orders again under
        it answers the first batch and never pays twice, which is how a batch whose answer
        was lost is resolved. One transfer per order, in the orders' order."""
        ...

    async def find_payout(
        self, order: PayoutOrder, *, batch_id: str | None = None
    ) -> ProviderTransfer | None:
        """With `batch_id` (the provider's id of the batch the payout went out in), a pure
        look-up of the payout's item."""
        ...

    async def find_batch(
        self, batch_id: str, orders: Sequence[PayoutOrder]
    ) -> list[ProviderTransfer | None]:
        """One look-up of the batch (however many of its payouts are asked for): each
        order's item, matched by our sender_item_id, or None when the batch lists none."""
        ...


class StatementKind(enum.StrEnum):
    """What a line of a provider's statement records, in our terms."""

    CAPTURE = "capture"
    REFUND = "refund"
    TRANSFER = "transfer"  # a payout to a worker (Stripe transfer, PayPal payout item)
    TRANSFER_REVERSAL = "transfer_reversal"
    DISPUTE = "dispute"  # a chargeback's withdrawal (or reinstatement) and its fee
    OTHER = "other"


@dataclass(frozen=True)
class StatementLine:
    """One line of a provider's statement (Stripe balance transaction, PayPal transaction).
    `amount` is signed from the platform's side (a capture is positive, a refund or a
    payout negative), `fee` what the provider charged for it (negative when it gave a fee
    back). `reference` is the provider object our rows store: the capture (charge or PayPal
    capture), the refund, the transfer or payout item, the dispute."""

    line_id: str
    kind: StatementKind
    reference: str
    amount: int
    fee: int
    currency: str
    created: datetime
    # The object the line's object belongs to, when the provider says (a transfer
    # reversal's transfer, a refund's capture).
    parent: str | None = None


@runtime_checkable
class StatementProvider(Protocol):
    """A provider whose statement can be read (Stripe balance transactions, PayPal
    Transaction Search): what finance closes the month on, matched by `reconcile
    --statements` line by line against our journal."""

    async def statement(self, since: datetime, until: datetime) -> list[StatementLine]:
        """Every line created in [since, until), all pages read."""
        ...


@runtime_checkable
class ReauthorizingProvider(Protocol):
    """PayPal: an authorisation is honoured for 3 days and may be renewed once (days 4-29);
    the renewal has a new id, and the original's expiry (capture_by) still applies."""

    async def reauthorize(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderHold: ...


@dataclass(frozen=True)
class PaymentMethodDomain:
    """A web domain registered with the provider for its wallets (Stripe's
    PaymentMethodDomain): Apple Pay, Google Pay and Link show in Elements there once
    their status is `active`."""

    domain_id: str
    domain_name: str
    enabled: bool
    # wallet -> its status on the domain ("active" | "inactive"), as the provider says
    statuses: Mapping[str, str] = field(default_factory=dict)
    created: datetime | None = None


@runtime_checkable
class PaymentMethodDomainProvider(Protocol):
    """Stripe: the marketplace's front-end domains registered for wallets (Apple Pay's
    domain verification, Google Pay, Link)."""

    async def register_domain(
        self, domain_name: str, *, idempotency_key: str
    ) -> PaymentMethodDomain:
        """Register `domain_name` (a repeat under the same key answers the first)."""
        ...

    async def list_domains(self, *, limit: int) -> list[PaymentMethodDomain]:
        """Up to `limit` registered domains, newest first, every page read."""
        ...


class SetupState(enum.StrEnum):
    """Where saving a payer's method for later (off-session) charges stands."""

    PENDING = "pending"  # the payer has not confirmed a method yet (or must authenticate)
    SUCCEEDED = "succeeded"  # saved: `payment_method` may be charged off-session
    CANCELED = "canceled"


@dataclass(frozen=True)
class ProviderSetup:
    setup_id: str
    state: SetupState
    customer: str
    payment_method: str | None = None
    client_secret: str | None = None  # Stripe: what Stripe.js confirmSetup takes
    approval_url: str | None = None  # PayPal: where the payer approves saving PayPal


@runtime_checkable
class SetupProvider(Protocol):
    """Saving the payer's method for the off-session charges of a recurring schedule
    (`NewHold.customer`): Stripe, a SetupIntent on a customer of ours; PayPal, a Vault v3
    setup token the payer approves, exchanged for a payment token (the vault id)."""

    async def create_setup(self, *, reference: str, email: str) -> ProviderSetup:
        """The setup for our `reference` (`recurring-{id}`), under keys derived from it
        (Stripe `{reference}-customer` and `{reference}-setup`, PayPal
        `{reference}-setup-token`), so asking again answers the same one."""
        ...

    async def get_setup(self, setup_id: str, *, reference: str) -> ProviderSetup:
        """How the setup stands. PayPal: a setup token the payer approved is exchanged
        here for its payment token, under the key `{reference}-payment-token`."""


@dataclass(frozen=True)
class ChargebackEvidence:
    """What we answer a chargeback with, in our terms: text only (no file uploads). Each
    adapter maps it onto its provider's fields (Stripe's `evidence` hash, PayPal's
    `evidences` of provide-evidence) and cuts it to their limits."""

    product_description: str  # the booking: title, dates, amount, the worker
    customer_name: str
    customer_email: str
    customer_purchase_ip: str | None  # the client's IP when they paid
    service_date: str | None  # YYYY-MM-DD: when the worker marked the job done
    access_activity_log: str  # payment, completion and release: when, by whom, from where
    uncategorized_text: str  # the audit trail, the dispute history, the admin's text


EVIDENCE_CUT_MARK = "\n[...cut to the provider's limit]"


def cut_to(text: str, limit: int) -> str:
    """`text` within a provider's `limit` of characters, marked when it had to be cut."""
    if len(text) <= limit:
        return text
    return text[: limit - len(EVIDENCE_CUT_MARK)] + EVIDENCE_CUT_MARK


@runtime_checkable
class EvidenceSubmitter(Protocol):
    """Stripe and PayPal: evidence answering a chargeback, submitted to the payer's bank
    (Stripe) or to PayPal, once."""

    async def submit_evidence(
        self, *, dispute_id: str, evidence: ChargebackEvidence, idempotency_key: str
    ) -> None:
        """Submit `evidence` for the provider's dispute `dispute_id`. Raises ProviderError
        when the provider refuses (e.g. the dispute takes no evidence any more), and
        ProviderUnavailableError when it did not answer: the caller asks again under the
        same key, which submits at most once."""
        ...


class StripeProtocols(
    PaymentProvider,
    ConnectProvider,
    PaymentMethodDomainProvider,
    SetupProvider,
    EvidenceSubmitter,
    Protocol,
):
    """What Stripe's adapter and its simulator both are (each checks it under
    TYPE_CHECKING), so that the two cannot drift apart."""
