"""What both simulators share: their rows in `simulated_objects`, Stripe-style idempotency
keys, fault injection, the keyed protocol calls, ids, and amount and currency checks.

State is read and written in the simulator's own short transactions, never the caller's:
like a remote provider's, it is independent of our rows and shared by every process on the
database.

Idempotency works like Stripe's: the first call under a key stores its result (and a
decline, which changes the intent), a repeat returns it without acting, and the same key
with another operation or other parameters is `idempotency_key_in_use`. Refusals that change
nothing (bad state, amount too large, unknown id) are not stored, as Stripe stores nothing
for requests that fail validation, so a retry after the state has changed can succeed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from handwork_payments.db import (
    Sessions,
    make_autocommit_sessions,
    provider_statements,
    transaction,
)
from handwork_payments.kit.money import MAX_AMOUNT_MINOR, MoneyError, normalize_currency
from handwork_payments.kit.rows import locking
from handwork_payments.models import SimulatedObject
from handwork_payments.providers.base import (
    HoldRef,
    HoldState,
    NewHold,
    PaymentDeclinedError,
    PayoutOrder,
    ProviderCapture,
    ProviderError,
    ProviderHold,
    ProviderIds,
    ProviderRefund,
    ProviderTransfer,
    ProviderUnavailableError,
    StatementLine,
    TransferState,
)
from handwork_payments.providers.currencies import CurrencyRules
from handwork_payments.providers.metrics import OPERATIONS
from handwork_payments.settings import Settings

T = TypeVar("T")
Json = dict[str, Any]

# The protocol's methods a fault can be injected into: every call metrics times, and
# these four it does not.
FAULT_OPERATIONS = frozenset(OPERATIONS) | {
    "parse_event",
    "statement",
    "create_setup",
    "submit_evidence",
}
FAULT_MODES = frozenset({"timeout", "timeout_after_success", "error", "delay"})

# Row kinds in simulated_objects.
IDEMPOTENCY = "idempotency"
FAULT = "fault"
# The oldest fault of a provider for an operation, counted down, deleted with its last use;
# its data as it was (times before this use).
_TAKE_FAULT = text(
    "WITH picked AS (SELECT id, data FROM simulated_objects WHERE provider = :provider"
    " AND kind = :kind AND data @> CAST(:operation AS jsonb) ORDER BY id LIMIT 1"
    " FOR UPDATE),"
    " used_up AS (DELETE FROM simulated_objects s USING picked WHERE s.id = picked.id"
    " AND (picked.data->>'times')::int <= 1),"
    " counted_down AS (UPDATE simulated_objects s SET data = jsonb_set(s.data, '{times}',"
    " to_jsonb((picked.data->>'times')::int - 1)) FROM picked WHERE s.id = picked.id"
    " AND (picked.data->>'times')::int > 1)"
    " SELECT data FROM picked"
)


# The statements every simulated call runs, built once per process: built per call, their
# construction and cache key cost about as much Python as their execution.
@cache
def _claim_statement() -> Any:
    """Claim an idempotency key (see _claim_key): insert its record or find it, locked."""
    claim = pg_insert(SimulatedObject).values(
        id=bindparam("id"),
        provider=bindparam("provider"),
        kind=bindparam("kind"),
        idempotency_key=bindparam("idempotency_key"),
        data=bindparam("data", type_=SimulatedObject.data.type),
    )
    return claim.on_conflict_do_update(
        index_elements=[SimulatedObject.idempotency_key],
        set_={"idempotency_key": claim.excluded.idempotency_key},
    ).returning(SimulatedObject)


@cache
def _load_statement(lock: bool) -> Any:
    query = select(SimulatedObject).where(
        SimulatedObject.id == bindparam("id"),
        SimulatedObject.provider == bindparam("provider"),
        SimulatedObject.kind == bindparam("kind"),
    )
    # Locked, it serialises changes to one object across every process on the database.
    return locking(query) if lock else query


PAYMENT_INTENT = "payment_intent"
CHARGE = "charge"
REFUND = "refund"
TRANSFER = "transfer"
TRANSFER_REVERSAL = "transfer_reversal"
ACCOUNT = "account"
ORDER = "order"
PAYOUT_ITEM = "payout_item"
DISPUTE = "dispute"
BALANCE_TRANSACTION = "balance_transaction"  # Stripe's statement lines
PAYMENT_METHOD_DOMAIN = "payment_method_domain"
CUSTOMER = "customer"
SETUP_INTENT = "setup_intent"
STATEMENT_LINE = "statement_line"  # PayPal's (Transaction Search)

# The rows a call's session made (session.info): see _insert.
_MADE = "simulated_rows_made"
ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
# The unique idempotency_key column holds "{provider}:{prefix}-{key}": keys are per provider
# account, and the installation's prefix keeps installations sharing one apart.
_MAX_KEY_LENGTH = 200
# simulated_objects.id is a VARCHAR(64); PostgreSQL text cannot hold NUL.
_MAX_ID_LENGTH = 64


class UnknownObjectError(ProviderError):
    """The id names no object at the provider (a 404 there)."""


# --- ids and times ---------------------------------------------------------------------------


def random_string(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def stripe_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{random_string(ALNUM, length)}"


def paypal_id(length: int = 17) -> str:
    return random_string(UPPER_ALNUM, length)


def utc_now() -> datetime:
    return datetime.now(UTC)


def paypal_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- stored answers (JSON) -------------------------------------------------------------------


def hold_json(hold: ProviderHold) -> Json:
    data = asdict(hold)
    data["state"] = hold.state.value
    data["capture_by"] = hold.capture_by.isoformat() if hold.capture_by else None
    return data


def hold_from_json(data: Mapping[str, Any]) -> ProviderHold:
    capture_by = data.get("capture_by")
    return ProviderHold(
        **{
            **data,
            "state": HoldState(data["state"]),
            "capture_by": datetime.fromisoformat(capture_by) if capture_by else None,
        }
    )


def transfer_json(transfer: ProviderTransfer) -> Json:
    data = asdict(transfer)
    data["state"] = transfer.state.value
    return data


def transfer_from_json(data: Mapping[str, Any]) -> ProviderTransfer:
    return ProviderTransfer(**{**data, "state": TransferState(data["state"])})


def save(row: SimulatedObject, data: Json) -> None:
    # JSONB is not mutation-tracked: say the column changed.
    row.data = data
    flag_modified(row, "data")


def check_same_currency(theirs: str, ours: str, code: str) -> None:
    if theirs.upper() != ours.upper():
        raise ProviderError(
            f"The currency {ours.upper()} does not match the payment's {theirs.upper()}.",
            code=code,
        )


OnHold = Callable[[AsyncSession, HoldRef, int, str], Awaitable[Json]]


class SimulatedProvider(ABC):
    """A built-in simulator behind the PaymentProvider protocol: the Stripe and PayPal
    flavours (`SimulatedStripe`, `SimulatedPayPal`) share the store, the keys and the
    faults, and the keyed calls whose shape is the same at both providers; each flavour
    implements the rest, and only the optional capabilities its provider has."""

    name: str
    live = False
    currency_rules: CurrencyRules
    # The provider's own codes for the refusals every call makes.
    amount_not_positive_code: str
    amount_too_large_code: str
    currency_invalid_code: str

    def __init__(self, sessions: Sessions, settings: Settings, ids: ProviderIds) -> None:
        self.sessions = sessions
        # Single statements without BEGIN and COMMIT around them.
        self._autocommit = make_autocommit_sessions(sessions.kw["bind"])
        self.settings = settings
        # Keys and references are sent under the installation's prefix, as to a real
        # provider: two installations on one simulator store never answer each other.
        self.ids = ids

    # --- what each flavour does in the keyed calls --------------------------------------

    @abstractmethod
    async def _open_hold(self, session: AsyncSession, hold: NewHold) -> Json: ...

    @abstractmethod
    async def _capture(
        self, session: AsyncSession, ref: HoldRef, amount: int, currency: str
    ) -> Json: ...

    @abstractmethod
    async def _cancel(self, session: AsyncSession, ref: HoldRef) -> None: ...

    @abstractmethod
    async def _refund(
        self, session: AsyncSession, ref: HoldRef, amount: int, currency: str
    ) -> Json: ...

    @abstractmethod
    async def _pay_out(self, session: AsyncSession, order: PayoutOrder, currency: str) -> Json: ...

    @abstractmethod
    def _missing(self, kind: str, object_id: str) -> UnknownObjectError: ...

    # Statements: the row kind holding the flavour's statement lines, and their reading.
    statement_kind: str

    @abstractmethod
    def _statement_line(self, data: Mapping[str, Any]) -> StatementLine: ...

    # --- statements (StatementProvider) ---------------------------------------------------

    async def statement(self, since: datetime, until: datetime) -> list[StatementLine]:
        """Every line created in [since, until), oldest first."""

        async def read(session: AsyncSession) -> Json:
            rows = await session.scalars(
                select(SimulatedObject).where(
                    SimulatedObject.provider == self.name,
                    SimulatedObject.kind == self.statement_kind,
                )
            )
            return {"lines": [row.data for row in rows]}

        found = await self._call("statement", read)
        lines = [self._statement_line(data) for data in found["lines"]]
        return sorted(
            (line for line in lines if since <= line.created < until),
            key=lambda line: (line.created, line.line_id),
        )

    # --- the keyed calls of the PaymentProvider protocol ---------------------------------

    async def create_hold(self, hold: NewHold, *, idempotency_key: str) -> ProviderHold:
        params: Json = asdict(hold) | {"currency": hold.currency.upper()}

        async def act(session: AsyncSession) -> Json:
            self._check_amount(hold.amount)
            currency = self._currency(hold.currency)
            self._check_rule(self.currency_rules.payment_problem(hold.amount, currency))
            return await self._open_hold(session, replace(hold, currency=currency))

        return hold_from_json(
            await self._call("create_hold", act, key=idempotency_key, params=params)
        )

    async def capture(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderCapture:
        result = await self._call_on_hold(
            "capture", self._capture, ref, amount, currency, idempotency_key
        )
        return ProviderCapture(
            capture_id=result["capture_id"], amount=result["amount"], fee=result.get("fee")
        )

    async def cancel(self, *, ref: HoldRef, idempotency_key: str) -> None:
        async def act(session: AsyncSession) -> Json:
            await self._cancel(session, ref)
            return {}

        await self._call("cancel", act, key=idempotency_key, params={"ref": asdict(ref)})

    async def refund(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderRefund:
        result = await self._call_on_hold(
            "refund", self._refund, ref, amount, currency, idempotency_key
        )
        return ProviderRefund(
            refund_id=result["refund_id"],
            amount=result["amount"],
            fee_refunded=result.get("fee_refunded", 0),
        )

    async def send_payout(self, order: PayoutOrder) -> ProviderTransfer:
        params: Json = {
            "payout_id": order.payout_id,
            "destination": order.destination,
            "amount": order.amount,
            "currency": order.currency.upper(),
        }

        async def act(session: AsyncSession) -> Json:
            self._check_amount(order.amount)
            currency = self._currency(order.currency)
            self._check_rule(self.currency_rules.payout_problem(order.amount, currency))
            return await self._pay_out(session, order, currency)

        result = await self._call("send_payout", act, key=order.idempotency_key, params=params)
        return transfer_from_json(result)

    # --- objects ---------------------------------------------------------------------------

    async def object_data(self, object_id: str) -> Json:
        """Any stored object of this provider (intent, charge, refund, transfer, account,
        order, payout item) in the provider's JSON shape."""
        if not _storable(object_id):
            raise self._missing("object", object_id)
        async with transaction(self.sessions) as session:
            row = await session.get(SimulatedObject, object_id)
            if row is None or row.provider != self.name or row.kind in (IDEMPOTENCY, FAULT):
                raise self._missing("object", object_id)
            return dict(row.data)

    # --- fault injection ------------------------------------------------------------------

    async def inject_fault(
        self, operation: str, mode: str, times: int = 1, *, delay_seconds: float = 0.0
    ) -> None:
        """Make the next `times` calls of `operation` fail: "timeout" (nothing done),
        "timeout_after_success" (done and stored under its idempotency key, the answer
        lost), "error" (refused, nothing done) or "delay" (done and committed, the answer
        `delay_seconds` late: a slow provider, or a caller killed while it waits). Stored
        in the table so every process sees it."""
        if operation not in FAULT_OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        if delay_seconds < 0 or (delay_seconds > 0) != (mode == "delay"):
            raise ValueError("delay_seconds (positive) goes with the delay mode only")
        # A time-ordered id: faults for one operation are consumed oldest first.
        fault_id = f"fault_{time.time_ns():020d}_{random_string(ALNUM, 8)}"
        data: Json = {"operation": operation, "mode": mode, "times": times}
        if mode == "delay":
            data["delay_seconds"] = delay_seconds
        async with transaction(self.sessions) as session:
            self._insert(session, fault_id, FAULT, data)

    async def clear_faults(self) -> None:
        async with transaction(self.sessions) as session:
            rows = await session.scalars(
                select(SimulatedObject).where(
                    SimulatedObject.provider == self.name, SimulatedObject.kind == FAULT
                )
            )
            for row in rows:
                await session.delete(row)

    async def _take_fault(self, operation: str) -> tuple[str, float] | None:
        """The oldest fault set for `operation`, used once (deleted with its last use), in
        one autocommit statement: every simulated call asks, and almost always finds none.
        FOR UPDATE (not SKIP LOCKED): two concurrent calls must not both use up one
        remaining fault, nor skip one that is still there."""
        async with self._autocommit() as session:
            data = await session.scalar(
                _TAKE_FAULT,
                {
                    "provider": self.name,
                    "kind": FAULT,
                    "operation": json.dumps({"operation": operation}),
                },
            )
        if data is None:
            return None
        return str(data["mode"]), float(data.get("delay_seconds", 0.0))

    async def _faulty(self, operation: str, act: Callable[[], Awaitable[T]]) -> T:
        fault = await self._take_fault(operation)
        mode, delay = fault if fault is not None else (None, 0.0)
        if mode == "timeout":
            raise ProviderUnavailableError(
                f"simulated timeout: {self.name} {operation} was not performed"
            )
        if mode == "error":
            raise ProviderError(
                f"Simulated failure of {self.name} {operation}", code="simulated_failure"
            )
        try:
            result = await act()
        except ProviderError:
            if mode == "timeout_after_success":
                raise ProviderUnavailableError(
                    f"simulated timeout: the answer to {self.name} {operation} was lost"
                ) from None
            raise
        if mode == "timeout_after_success":
            raise ProviderUnavailableError(
                f"simulated timeout: {self.name} {operation} was performed, the answer lost"
            )
        if mode == "delay":
            await asyncio.sleep(delay)
        return result

    # --- transactions and idempotency -----------------------------------------------------

    async def _call(
        self,
        operation: str,
        act: Callable[[AsyncSession], Awaitable[Json]],
        *,
        key: str | None = None,
        params: Json | None = None,
    ) -> Json:
        with provider_statements():
            result = await self._faulty(
                operation, lambda: self._perform(act, operation=operation, key=key, params=params)
            )
        if self.settings.simulator_latency_ms:
            # A slow provider (SIMULATOR_LATENCY_MS): the answer comes late, after the
            # simulator's own transaction, so it holds none of our connections meanwhile.
            await asyncio.sleep(self.settings.simulator_latency_ms / 1000)
        return result

    async def _call_on_hold(
        self, operation: str, act: OnHold, ref: HoldRef, amount: int, currency: str, key: str
    ) -> Json:
        """A keyed call that moves `amount` on the hold `ref` names (capture, refund,
        reauthorize)."""
        params: Json = {"ref": asdict(ref), "amount": amount, "currency": currency.upper()}

        async def on_hold(session: AsyncSession) -> Json:
            self._check_rule(self.currency_rules.amount_problem(amount, currency.upper()))
            return await act(session, ref, amount, currency)

        return await self._call(operation, on_hold, key=key, params=params)

    async def _perform(
        self,
        act: Callable[[AsyncSession], Awaitable[Json]],
        *,
        operation: str | None = None,
        key: str | None = None,
        params: Json | None = None,
    ) -> Json:
        """Run `act` in one transaction of the simulator's own, under the idempotency key
        when there is one. A decline is committed (the intent keeps its error, the key its
        answer) and raised after; any other error rolls everything back."""
        declined: PaymentDeclinedError | None = None
        async with transaction(self.sessions) as session:
            record = None
            if key is not None:
                assert operation is not None
                record = await self._claim_key(session, operation, key, params or {})
                stored = record.data
                if "result" in stored:
                    return dict(stored["result"])
                if "declined" in stored:
                    declined = PaymentDeclinedError(
                        stored["declined"]["message"], code=stored["declined"]["code"]
                    )
            if declined is None:
                try:
                    result = await act(session)
                except PaymentDeclinedError as exc:
                    declined = exc
                    if record is not None:
                        save(
                            record,
                            {**record.data, "declined": {"message": exc.message, "code": exc.code}},
                        )
                else:
                    if record is not None:
                        save(record, {**record.data, "result": result})
                    return result
        assert declined is not None
        raise declined

    async def _claim_key(
        self, session: AsyncSession, operation: str, key: str, params: Json
    ) -> SimulatedObject:
        if not key or len(key) > _MAX_KEY_LENGTH:
            raise ProviderError(
                f"Idempotency keys are 1 to {_MAX_KEY_LENGTH} characters", code="parameter_invalid"
            )
        scoped = f"{self.name}:{self.ids.key(key)}"
        # One statement: a first call inserts the key's record, a repeated one finds it,
        # and either way the row comes back locked (ON CONFLICT DO UPDATE locks the row it
        # finds). A concurrent call with the same key waits until the first commits (or
        # rolls back), then finds its stored answer: one key, one action, across processes.
        record = await session.scalar(
            _claim_statement(),
            {
                "id": f"idem_{random_string(ALNUM, 24)}",
                "provider": self.name,
                "kind": IDEMPOTENCY,
                "idempotency_key": scoped,
                "data": {"operation": operation, "params": params},
            },
            execution_options={"populate_existing": True},
        )
        assert record is not None
        if record.data.get("operation") != operation or record.data.get("params") != params:
            raise ProviderError(
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                code="idempotency_key_in_use",
            )
        return record

    async def _key_record(self, session: AsyncSession, key: str) -> SimulatedObject | None:
        return await session.scalar(
            select(SimulatedObject).where(
                SimulatedObject.idempotency_key == f"{self.name}:{self.ids.key(key)}"
            )
        )

    # --- rows ------------------------------------------------------------------------------

    def _insert(
        self, session: AsyncSession, object_id: str, kind: str, data: Json
    ) -> SimulatedObject:
        row = SimulatedObject(id=object_id, provider=self.name, kind=kind, data=data)
        session.add(row)
        # Kept for the call's session: the session's map holds unchanged rows weakly, and a
        # row made here is often read again before the call ends (see _load).
        session.info.setdefault(_MADE, []).append(row)
        return row

    async def _load(
        self, session: AsyncSession, object_id: str, kind: str, *, lock: bool = False
    ) -> SimulatedObject:
        if not _storable(object_id):
            # Could never have been stored: unknown, as the provider would answer, rather
            # than a database error.
            raise self._missing(kind, object_id)
        # Unlocked, an object this call's session holds already is that object: a SELECT
        # would return the same instance (the session keeps its copy), after a round trip.
        row = None if lock else self._held(session, object_id)
        if row is None:
            row = await session.scalar(
                _load_statement(lock), {"id": object_id, "provider": self.name, "kind": kind}
            )
        if row is None or row.provider != self.name or row.kind != kind:
            raise self._missing(kind, object_id)
        return row

    @staticmethod
    def _held(session: AsyncSession, object_id: str) -> SimulatedObject | None:
        key = session.identity_key(SimulatedObject, object_id)
        found = session.identity_map.get(key)
        return found if isinstance(found, SimulatedObject) else None

    async def _find(self, session: AsyncSession, kind: str, nested: Json) -> SimulatedObject | None:
        """The first object of `kind` whose JSON contains `nested`."""
        return await session.scalar(
            select(SimulatedObject).where(
                SimulatedObject.provider == self.name,
                SimulatedObject.kind == kind,
                SimulatedObject.data.contains(nested),
            )
        )

    # --- checks ----------------------------------------------------------------------------

    def _check_amount(self, amount: int) -> None:
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise ProviderError("Amounts are integers in minor units", code="parameter_invalid")
        if amount < 1:
            raise ProviderError(
                "The amount must be a positive integer.", code=self.amount_not_positive_code
            )
        if amount > MAX_AMOUNT_MINOR:
            raise ProviderError(
                f"The amount must be no more than {MAX_AMOUNT_MINOR} minor units.",
                code=self.amount_too_large_code,
            )

    def _check_rule(self, problem: str | None) -> None:
        """Refuse what the provider's table (providers/currencies.py) says it refuses."""
        if problem is not None:
            raise ProviderError(problem, code=self.currency_invalid_code)

    def _currency(self, currency: str) -> str:
        try:
            return normalize_currency(currency)
        except MoneyError as exc:
            raise ProviderError(
                f"Invalid currency: {currency}", code=self.currency_invalid_code
            ) from exc


def _storable(object_id: str) -> bool:
    return 0 < len(object_id) <= _MAX_ID_LENGTH and "\x00" not in object_id
