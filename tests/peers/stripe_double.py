"""A request-level double of Stripe's HTTP API, for what localstripe lacks.

It serves the real wire protocol (form-encoded requests, Stripe-shaped JSON objects and
errors, `Request-Id` headers) on 127.0.0.1 from a Starlette app run by uvicorn in a
background thread, so the official SDK talks to it through its real HTTPX client, timeouts
included. It records every request exactly as the SDK sent it (flattened form fields such as
`metadata[payout_id]`, and the `Idempotency-Key` header) for tests to assert on.

Covered: PaymentIntents with manual and partial capture, cancel, refunds, Connect accounts
and account links, transfers (list by transfer_group) and reversals, disputes (retrieve,
and update with evidence checked against Stripe's DisputeUpdateParams), idempotent replay (and
the idempotency_error for a key reused with other parameters), and scripted faults: any
Stripe error answer, rate limits, 5xx, and requests that never answer (before or after
they took effect, to stand for a timeout whose outcome is unknown).

Test payment methods: `pm_card_visa` authorises, `pm_card_chargeDeclinedInsufficientFunds`
is declined (card_error, decline_code insufficient_funds), `pm_card_authenticationRequired`
needs 3-D Secure (requires_action); `pm_card_visa_apple_pay`, `pm_card_visa_google_pay` and
`pm_card_link` authorise a card whose charge names its wallet (`card.wallet.type`).
Stablecoin intents (`allowed_payment_method_types[]=crypto`; `payment_method_types` is
read-only since API version 2026-09-30.endive) refuse manual capture, as Stripe does not offer
it for crypto; `crypto_available=False` stands for an account without the Crypto method.
Payment method domains: created (once per name) and listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

START_TIMEOUT_SECONDS = 10.0
# A hanging request gives up by itself after this, so a forgotten fault cannot wedge a run.
MAX_HANG_SECONDS = 30.0
# Platform balance available for transfers, per currency, unless a test sets another.
DEFAULT_PLATFORM_BALANCE = 10_000_000
# Stripe card authorisations: the charge says when it must be captured. Deliberately not
# exactly created + 7 days, so tests can tell the adapter used the charge's value.
CAPTURE_BEFORE_SECONDS = 6 * 24 * 3600 + 23 * 3600

# DisputeUpdateParams.evidence: the text fields (the long ones at most 20,000 characters
# each, all fields together 150,000) and the fields that take a file upload's id.
EVIDENCE_LONG_TEXT = frozenset(
    {
        "access_activity_log",
        "cancellation_policy_disclosure",
        "cancellation_rebuttal",
        "duplicate_charge_explanation",
        "product_description",
        "refund_policy_disclosure",
        "refund_refusal_explanation",
        "uncategorized_text",
    }
)
EVIDENCE_SHORT_TEXT = frozenset(
    {
        "billing_address",
        "customer_email_address",
        "customer_name",
        "customer_purchase_ip",
        "duplicate_charge_id",
        "service_date",
        "shipping_address",
        "shipping_carrier",
        "shipping_date",
        "shipping_tracking_number",
    }
)
EVIDENCE_FILES = frozenset(
    {
        "cancellation_policy",
        "customer_communication",
        "customer_signature",
        "duplicate_charge_documentation",
        "receipt",
        "refund_policy",
        "service_documentation",
        "shipping_documentation",
        "uncategorized_file",
    }
)
EVIDENCE_FIELD_LIMIT = 20_000
EVIDENCE_TOTAL_LIMIT = 150_000
DISPUTE_TAKES_EVIDENCE = ("warning_needs_response", "needs_response")

CARD_METHODS = {
    "pm_card_visa": "authorize",
    "pm_card_chargeDeclinedInsufficientFunds": "decline",
    "pm_card_authenticationRequired": "authenticate",
    "pm_card_visa_apple_pay": "authorize",
    "pm_card_visa_google_pay": "authorize",
    "pm_card_link": "authorize",
}
WALLETS = {
    "pm_card_visa_apple_pay": "apple_pay",
    "pm_card_visa_google_pay": "google_pay",
    "pm_card_link": "link",
}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    form: dict[str, str]  # body fields exactly as encoded, e.g. {"metadata[payout_id]": "7"}
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class _Fault:
    method: str
    path: str
    times: int
    status: int | None = None
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: str | None = None  # "before" or "after" the request takes effect


class _Refusal(Exception):
    """A Stripe error answer."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error


def _invalid(message: str, code: str | None = None, param: str | None = None) -> _Refusal:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return _Refusal(404 if code == "resource_missing" else 400, error)


def _unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`a[b][c]=v` form fields as nested dicts (list indexes stay string keys)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return root


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value[k] for k in sorted(value, key=int)]
    return [value]


def _int(params: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    raw = params.get(name)
    if raw is None:
        if required:
            raise _invalid(f"Missing required param: {name}.", "parameter_missing", name)
        return None
    if not re.fullmatch(r"\d+", str(raw)):
        raise _invalid(f"Invalid integer: {raw}", "parameter_invalid_integer", name)
    return int(raw)


def _wallet(payment_method: str) -> dict[str, Any] | None:
    wallet = WALLETS.get(payment_method)
    return {"type": wallet, wallet: {}, "dynamic_last4": "4242"} if wallet else None


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


Handler = Callable[[dict[str, Any], dict[str, str]], tuple[int, dict[str, Any]]]


class StripeDouble:
    def __init__(self, secret_key: str = "sk_test_double") -> None:
        self.secret_key = secret_key
        self.intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.transfers: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        # The platform's statement, oldest first (Stripe lists it newest first).
        self.balance_transactions: dict[str, dict[str, Any]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.domains: dict[str, dict[str, Any]] = {}
        self.crypto_available = True
        self.customers: dict[str, dict[str, Any]] = {}
        self.setup_intents: dict[str, dict[str, Any]] = {}
        self.account_links: list[dict[str, Any]] = []
        # What each connected account holds (transfers in, reversals and payouts out).
        self.account_balances: dict[str, dict[str, int]] = {}
        self.platform_balance: dict[str, int] = {}
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._idempotent: dict[
            str, tuple[tuple[str, str, tuple[tuple[str, str], ...]], int, dict[str, Any]]
        ] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.url = ""
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(r"/v1/payment_intents"), self._create_intent),
            ("GET", re.compile(r"/v1/payment_intents/(?P<id>[^/]+)"), self._get_intent),
            ("POST", re.compile(r"/v1/payment_intents/(?P<id>[^/]+)/confirm"), self._confirm),
            ("POST", re.compile(r"/v1/payment_intents/(?P<id>[^/]+)/capture"), self._capture),
            ("POST", re.compile(r"/v1/payment_intents/(?P<id>[^/]+)/cancel"), self._cancel),
            ("POST", re.compile(r"/v1/refunds"), self._create_refund),
            ("POST", re.compile(r"/v1/transfers"), self._create_transfer),
            ("GET", re.compile(r"/v1/transfers"), self._list_transfers),
            ("GET", re.compile(r"/v1/balance_transactions"), self._list_balance_transactions),
            ("GET", re.compile(r"/v1/transfers/(?P<id>[^/]+)"), self._get_transfer),
            ("POST", re.compile(r"/v1/transfers/(?P<id>[^/]+)/reversals"), self._reverse),
            ("POST", re.compile(r"/v1/accounts"), self._create_account),
            ("GET", re.compile(r"/v1/accounts/(?P<id>[^/]+)"), self._get_account),
            ("POST", re.compile(r"/v1/account_links"), self._create_account_link),
            ("POST", re.compile(r"/v1/payment_method_domains"), self._create_domain),
            ("GET", re.compile(r"/v1/payment_method_domains"), self._list_domains),
            ("POST", re.compile(r"/v1/customers"), self._create_customer),
            ("POST", re.compile(r"/v1/setup_intents"), self._create_setup_intent),
            ("GET", re.compile(r"/v1/disputes/(?P<id>[^/]+)"), self._get_dispute),
            ("POST", re.compile(r"/v1/disputes/(?P<id>[^/]+)"), self._update_dispute),
        ]

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> StripeDouble:
        app = Starlette(
            routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST", "DELETE"])]
        )
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        # Bound here, before the thread starts: the port is known and never raced for.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="stripe-double",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the Stripe double did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        # Release hanging requests first, so shutdown does not wait for them.
        self._stopping.set()
        with self._lock:
            loop, release = self._loop, self._release
        if loop is not None and release is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(release.set)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), "the Stripe double did not stop"
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> StripeDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests read and script ----------------------------------------------------

    def requests(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self._requests
                if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    def fail_next(
        self,
        method: str,
        path: str,
        *,
        status: int,
        error: dict[str, Any],
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` matching requests with this Stripe error, without acting
        (and without storing an idempotent result, as Stripe does for such refusals)."""
        with self._lock:
            self._faults.append(_Fault(method, path, times, status, error, headers or {}))

    def rate_limit_next(self, method: str, path: str, *, times: int = 1) -> None:
        self.fail_next(
            method,
            path,
            status=429,
            times=times,
            error={
                "type": "invalid_request_error",
                "code": "rate_limit",
                "message": "Too many requests hit the API too quickly.",
            },
        )

    def api_error_next(self, method: str, path: str, *, times: int = 1) -> None:
        self.fail_next(
            method,
            path,
            status=500,
            times=times,
            error={"type": "api_error", "message": "Something went wrong on Stripe's end."},
        )

    def hang_next(self, method: str, path: str, *, after_effect: bool, times: int = 1) -> None:
        """Never answer the next `times` matching requests. `after_effect=True` applies the
        request first (the answer is lost on the way back); False stalls before it acts."""
        with self._lock:
            self._faults.append(
                _Fault(method, path, times, hang="after" if after_effect else "before")
            )

    def expire_authorization(self, intent_id: str) -> None:
        """What Stripe does when an uncaptured authorisation lapses."""
        with self._lock:
            intent = self.intents[intent_id]
            intent.update(status="canceled", cancellation_reason="automatic", amount_capturable=0)

    def set_account_balance(self, account_id: str, currency: str, amount: int) -> None:
        """E.g. the connected account paid its balance out to the bank."""
        with self._lock:
            self.account_balances.setdefault(account_id, {})[currency.lower()] = amount

    def add_account(self, account_id: str | None = None) -> str:
        with self._lock:
            account = self._new_account({"type": "express"}, account_id)
            return str(account["id"])

    def add_dispute(self, intent_id: str, amount: int, dispute_id: str) -> dict[str, Any]:
        """The payer's bank disputes the intent's charge; the dispute as Stripe sends it."""
        with self._lock:
            charge = self.charges[self.intents[intent_id]["latest_charge"]]
            created = int(time.time())
            self.disputes[dispute_id] = {
                "id": dispute_id,
                "object": "dispute",
                "amount": amount,
                "charge": charge["id"],
                "created": created,
                "currency": charge["currency"],
                "evidence": {},
                "evidence_details": {
                    "due_by": created + 7 * 24 * 3600,
                    "has_evidence": False,
                    "past_due": False,
                    "submission_count": 0,
                },
                "livemode": False,
                "metadata": {},
                "payment_intent": intent_id,
                "reason": "product_not_received",
                "status": "needs_response",
            }
            return dict(self.disputes[dispute_id])

    def forget_idempotency_keys(self) -> None:
        """What Stripe does 24 hours after a request: its key answers nothing any more."""
        with self._lock:
            self._idempotent.clear()

    # --- HTTP ------------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        body = (await request.body()).decode()
        form_pairs = parse_qsl(body, keep_blank_values=True)
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            form=dict(form_pairs),
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        with self._lock:
            self._requests.append(recorded)
            fault = self._take_fault(recorded.method, recorded.path)
        if recorded.headers.get("authorization") != f"Bearer {self.secret_key}":
            return self._answer(
                401,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "message": "Invalid API Key provided.",
                    }
                },
            )
        if fault is not None and fault.hang == "before":
            await self._hang()
            return self._answer(504, {"error": {"type": "api_error", "message": "hung"}})
        if fault is not None and fault.status is not None:
            assert fault.error is not None
            return self._answer(fault.status, {"error": fault.error}, fault.headers)

        key = recorded.idempotency_key if recorded.method == "POST" else None
        fingerprint = (recorded.method, recorded.path, tuple(sorted(form_pairs)))
        with self._lock:
            if key is not None and key in self._idempotent:
                first, status, payload = self._idempotent[key]
                if first != fingerprint:
                    status, payload = (
                        400,
                        {
                            "error": {
                                "type": "idempotency_error",
                                "message": (
                                    "Keys for idempotent requests can only be used with the same "
                                    f"parameters they were first used with. Try using a key other "
                                    f"than '{key}' if you meant to execute a different request."
                                ),
                            }
                        },
                    )
                    return self._answer(status, payload)
                return self._answer(status, payload, {"Idempotent-Replayed": "true"})
            status, payload = self._dispatch(
                recorded, form_pairs, request.query_params.multi_items()
            )
            # Stripe keeps the result of every request that began executing (a decline
            # included); refused parameters are not kept, so a corrected retry can act.
            if key is not None and (status < 400 or status == 402):
                self._idempotent[key] = (fingerprint, status, payload)
        if fault is not None and fault.hang == "after":
            await self._hang()
        return self._answer(status, payload)

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.path == path and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _dispatch(
        self,
        recorded: RecordedRequest,
        form_pairs: list[tuple[str, str]],
        query_pairs: list[tuple[str, str]],
    ) -> tuple[int, dict[str, Any]]:
        params = _unflatten(form_pairs if recorded.method == "POST" else query_pairs)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(recorded.path)
            if method == recorded.method and match:
                try:
                    return handler(params, match.groupdict())
                except _Refusal as refusal:
                    return refusal.status, {"error": refusal.error}
        return 404, {
            "error": {
                "type": "invalid_request_error",
                "message": f"Unrecognized request URL ({recorded.method}: {recorded.path}).",
            }
        }

    async def _hang(self) -> None:
        # The event lives in the server's loop; stop() sets it from the test's thread.
        with self._lock:
            if self._release is None:
                self._loop = asyncio.get_running_loop()
                self._release = asyncio.Event()
            release = self._release
        if self._stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), MAX_HANG_SECONDS)

    @staticmethod
    def _answer(
        status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Response:
        return JSONResponse(
            payload,
            status_code=status,
            headers={"Request-Id": _new_id("req"), **(headers or {})},
        )

    # --- PaymentIntents --------------------------------------------------------------------

    def _intent_view(self, intent: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        view = dict(intent)
        expand = _values(params.get("expand"))
        if "latest_charge" in expand and intent["latest_charge"]:
            charge = dict(self.charges[intent["latest_charge"]])
            txn = charge.get("balance_transaction")
            if "latest_charge.balance_transaction" in expand and txn:
                charge["balance_transaction"] = dict(self.balance_transactions[txn])
            view["latest_charge"] = charge
        return view

    # --- the platform's balance transactions (its statement) ------------------------------

    def _book(self, kind: str, source: str, amount: int, fee: int, obj: dict[str, Any]) -> str:
        txn_id = _new_id("txn")
        self.balance_transactions[txn_id] = {
            "id": txn_id,
            "object": "balance_transaction",
            "amount": amount,
            "created": int(time.time()),
            "currency": obj["currency"],
            "fee": fee,
            "fee_details": (
                [{"amount": fee, "currency": obj["currency"], "type": "stripe_fee",
                  "description": "Stripe processing fees", "application": None}]
                if fee else []
            ),
            "net": amount - fee,
            "source": source,
            "status": "available",
            "type": kind,
        }  # fmt: skip
        return txn_id

    def _book_charge(self, charge_id: str, amount: int, intent: dict[str, Any]) -> str:
        """Stripe's standard US card pricing: 2.9% (rounded half up) + 30 cents."""
        fee = (amount * 29 + 500) // 1000 + 30
        return self._book("charge", charge_id, amount, fee, intent)

    def _list_balance_transactions(
        self, params: dict[str, Any], _: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """Newest first, `created[gte]` / `created[lt]`, paged by `starting_after`."""
        limit = _int(params, "limit", required=False) or 10
        created = params.get("created") or {}
        gte, lt = int(created.get("gte", 0)), int(created.get("lt", 2**62))
        found = [
            t for t in reversed(list(self.balance_transactions.values()))
            if gte <= t["created"] < lt
        ]  # fmt: skip
        after = params.get("starting_after")
        if after is not None:
            ids = [t["id"] for t in found]
            found = found[ids.index(after) + 1 :] if after in ids else []
        return 200, {
            "object": "list",
            "data": found[:limit],
            "has_more": len(found) > limit,
            "url": "/v1/balance_transactions",
        }

    def _intent(self, intent_id: str) -> dict[str, Any]:
        try:
            return self.intents[intent_id]
        except KeyError:
            raise _invalid(f"No such payment_intent: '{intent_id}'", "resource_missing") from None

    def _create_intent(
        self, params: dict[str, Any], _: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        amount = _int(params, "amount")
        assert amount is not None
        if amount < 1:
            raise _invalid("Amount must be at least 1", "amount_too_small", "amount")
        currency = params.get("currency")
        if not currency or currency != currency.lower():
            raise _invalid("Invalid currency", "parameter_invalid_string", "currency")
        capture_method = params.get("capture_method", "automatic")
        if capture_method not in ("automatic", "automatic_async", "manual"):
            raise _invalid("Invalid capture_method", "parameter_invalid_string", "capture_method")
        apm = params.get("automatic_payment_methods")
        if apm is not None and (
            apm.get("enabled") != "true"
            or apm.get("allow_redirects", "always") not in ("always", "never")
        ):
            raise _invalid("Invalid automatic_payment_methods", param="automatic_payment_methods")
        if "payment_method_types" in params:
            raise _invalid(
                "payment_method_types is no longer supported on this API version.",
                "payment_method_types_no_longer_supported",
                "payment_method_types",
            )
        allowed = _values(params.get("allowed_payment_method_types"))
        if allowed and apm is not None:
            raise _invalid(
                "allowed_payment_method_types cannot be used with automatic_payment_methods.",
                param="allowed_payment_method_types",
            )
        # Incompatible types are dropped silently, as Stripe does.
        types = [t for t in allowed if t != "crypto" or self.crypto_available] or ["card"]
        if "crypto" in allowed and capture_method != "automatic":
            raise _invalid(
                f"The payment method type crypto does not support capture_method {capture_method}.",
                "payment_intent_invalid_parameter",
                "capture_method",
            )
        payment_method = params.get("payment_method")
        if payment_method is not None and payment_method not in CARD_METHODS:
            raise _invalid(f"No such PaymentMethod: '{payment_method}'", "resource_missing")
        intent_id = _new_id("pi")
        intent: dict[str, Any] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "automatic_payment_methods": (
                {"enabled": True, "allow_redirects": apm.get("allow_redirects", "always")}
                if apm
                else None
            ),
            "cancellation_reason": None,
            "capture_method": capture_method,
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}",
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": currency,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "next_action": None,
            "payment_method": payment_method,
            "payment_method_types": types,
            "status": "requires_confirmation" if payment_method else "requires_payment_method",
        }
        self.intents[intent_id] = intent
        if params.get("confirm") == "true":
            if payment_method is None:
                raise _invalid(
                    "You cannot confirm without a payment method.",
                    "payment_intent_unexpected_state",
                )
            self._confirm_intent(intent)
        return 200, self._intent_view(intent, params)

    def _get_intent(
        self, params: dict[str, Any], match: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        return 200, self._intent_view(self._intent(match["id"]), params)

    def _confirm(self, params: dict[str, Any], match: dict[str, str]) -> tuple[int, dict[str, Any]]:
        intent = self._intent(match["id"])
        if intent["status"] != "requires_confirmation":
            raise self._unexpected_state(intent, "confirmed", "requires_confirmation")
        self._confirm_intent(intent)
        return 200, self._intent_view(intent, params)

    def _confirm_intent(self, intent: dict[str, Any]) -> None:
        outcome = CARD_METHODS[intent["payment_method"]]
        if outcome == "authenticate":
            intent.update(
                status="requires_action",
                next_action={
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect"},
                },
            )
            return
        charge_id = _new_id("ch")
        created = int(time.time())
        declined = outcome == "decline"
        self.charges[charge_id] = {
            "id": charge_id,
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": 0,
            "amount_refunded": 0,
            "captured": False,
            "created": created,
            "currency": intent["currency"],
            "failure_code": "card_declined" if declined else None,
            "outcome": {"type": "issuer_declined" if declined else "authorized"},
            "paid": not declined,
            "payment_intent": intent["id"],
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": "visa",
                    "last4": "9995" if declined else "4242",
                    "capture_before": None if declined else created + CAPTURE_BEFORE_SECONDS,
                    "wallet": _wallet(intent["payment_method"]),
                },
            },
            "refunded": False,
            "status": "failed" if declined else "succeeded",
        }
        intent["latest_charge"] = charge_id
        if declined:
            error = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
                "charge": charge_id,
            }
            intent.update(
                status="requires_payment_method", payment_method=None, last_payment_error=error
            )
            raise _Refusal(402, {**error, "payment_intent": dict(intent)})
        if intent["capture_method"] == "manual":
            intent.update(status="requires_capture", amount_capturable=intent["amount"])
        else:
            self.charges[charge_id].update(
                captured=True,
                amount_captured=intent["amount"],
                balance_transaction=self._book_charge(charge_id, intent["amount"], intent),
            )
            intent.update(status="succeeded", amount_received=intent["amount"])

    def _capture(self, params: dict[str, Any], match: dict[str, str]) -> tuple[int, dict[str, Any]]:
        intent = self._intent(match["id"])
        if intent["status"] != "requires_capture":
            raise self._unexpected_state(intent, "captured", "requires_capture")
        amount = _int(params, "amount_to_capture", required=False) or intent["amount_capturable"]
        if amount > intent["amount_capturable"]:
            raise _invalid(
                "The amount to capture is greater than the amount capturable.",
                "amount_too_large",
                "amount_to_capture",
            )
        charge_id = intent["latest_charge"]
        self.charges[charge_id].update(
            captured=True,
            amount_captured=amount,
            balance_transaction=self._book_charge(charge_id, amount, intent),
        )
        # The rest of the authorisation is released, not refunded.
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return 200, self._intent_view(intent, params)

    def _cancel(self, params: dict[str, Any], match: dict[str, str]) -> tuple[int, dict[str, Any]]:
        intent = self._intent(match["id"])
        if intent["status"] in ("succeeded", "canceled"):
            raise self._unexpected_state(
                intent,
                "canceled",
                "requires_payment_method, requires_capture, requires_confirmation, "
                "requires_action, processing",
            )
        intent.update(
            status="canceled",
            cancellation_reason=params.get("cancellation_reason"),
            amount_capturable=0,
            next_action=None,
        )
        return 200, self._intent_view(intent, params)

    @staticmethod
    def _unexpected_state(intent: dict[str, Any], verb: str, allowed: str) -> _Refusal:
        return _invalid(
            f"This PaymentIntent could not be {verb} because it has a status of "
            f"{intent['status']}. Only a PaymentIntent with one of the following statuses "
            f"may be {verb}: {allowed}.",
            "payment_intent_unexpected_state",
        )

    def _create_refund(
        self, params: dict[str, Any], _: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        intent = self._intent(str(params.get("payment_intent")))
        if intent["status"] != "succeeded":
            raise _invalid(
                "This PaymentIntent has no captured charge to refund.", "charge_not_refundable"
            )
        charge = self.charges[intent["latest_charge"]]
        left = charge["amount_captured"] - charge["amount_refunded"]
        amount = _int(params, "amount", required=False) or left
        if amount > left:
            raise _invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                "amount_too_large",
                "amount",
            )
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        refund = {
            "id": _new_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": intent["currency"],
            "metadata": params.get("metadata") or {},
            "payment_intent": intent["id"],
            "status": "succeeded",
        }
        # Stripe keeps its fee: the refund's line gives none back.
        refund["balance_transaction"] = self._book("refund", refund["id"], -amount, 0, intent)
        self.refunds[refund["id"]] = refund
        if "balance_transaction" in _values(params.get("expand")):
            return 200, {
                **refund,
                "balance_transaction": dict(
                    self.balance_transactions[refund["balance_transaction"]]
                ),
            }
        return 200, refund

    # --- Connect ---------------------------------------------------------------------------

    def _new_account(self, params: dict[str, Any], account_id: str | None = None) -> dict[str, Any]:
        account_id = account_id or _new_id("acct")
        account: dict[str, Any] = {
            "id": account_id,
            "object": "account",
            "type": params.get("type"),
            "email": params.get("email"),
            "capabilities": {name: "inactive" for name in params.get("capabilities") or {}},
            "charges_enabled": False,
            "payouts_enabled": False,
            "details_submitted": False,
            "metadata": params.get("metadata") or {},
            "created": int(time.time()),
        }
        self.accounts[account_id] = account
        self.account_balances.setdefault(account_id, {})
        return account

    def _create_customer(
        self, params: dict[str, Any], _: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        customer = {
            "id": _new_id("cus"),
            "object": "customer",
            "email": params.get("email"),
            "metadata": params.get("metadata") or {},
        }
        self.customers[customer["id"]] = customer
        return 200, customer

    def _create_setup_intent(
        self, params: dict[str, Any], _: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        customer = params.get("customer")
        if customer not in self.customers:
            raise _invalid(f"No such customer: '{customer}'", "resource_missing", "customer")
        setup_id = _new_id("seti")
        setup = {
            "id": setup_id,
            "object": "setup_intent",
            "client_secret": f"{setup_id}_secret_{secrets.token_hex(8)}",
            "customer": customer,
            "metadata": params.get("metadata") or {},
            "payment_method": None,
            "payment_method_types": _values(params.get("allowed_payment_method_types")),
            "status": "requires_payment_method",
            "usage": params.get("usage", "on_session"),
        }
        self.setup_intents[setup_id] = setup
        return 200, setup

    def _create_account(
        self, params: dict[str, Any], _: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        if params.get("type") not in ("express", "standard", "custom"):
            raise _invalid("Invalid type", "parameter_invalid_string", "type")
        return 200, self._new_account(params)

    def _get_account(self, _: dict[str, Any], match: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if match["id"] not in self.accounts:
            raise _invalid(f"No such account: '{match['id']}'", "resource_missing")
        return 200, self.accounts[match["id"]]

    def _create_account_link(
        self, params: dict[str, Any], _: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        account_id = params.get("account")
        if account_id not in self.accounts:
            raise _invalid(f"No such account: '{account_id}'", "resource_missing", "account")
        for name in ("refresh_url", "return_url"):
            if not params.get(name):
                raise _invalid(f"Missing required param: {name}.", "parameter_missing", name)
        if params.get("type") not in ("account_onboarding", "account_update"):
            raise _invalid("Invalid type", "parameter_invalid_string", "type")
        created = int(time.time())
        link = {
            "object": "account_link",
            "created": created,
            "expires_at": created + 300,
            "url": f"https://connect.stripe.com/setup/e/{account_id}/{secrets.token_urlsafe(12)}",
        }
        self.account_links.append({**link, "account": account_id, "type": params["type"]})
        return 200, link

    def _create_transfer(
        self, params: dict[str, Any], _: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        amount = _int(params, "amount")
        assert amount is not None
        currency = str(params.get("currency") or "")
        destination = params.get("destination")
        if destination not in self.accounts:
            raise _invalid(
                f"No such destination: '{destination}'", "resource_missing", "destination"
            )
        available = self.platform_balance.get(currency, DEFAULT_PLATFORM_BALANCE)
        if amount > available:
            raise _invalid(
                "You have insufficient available funds in your Stripe account.",
                "balance_insufficient",
            )
        self.platform_balance[currency] = available - amount
        balances = self.account_balances.setdefault(destination, {})
        balances[currency] = balances.get(currency, 0) + amount
        transfer_id = _new_id("tr")
        transfer = {
            "id": transfer_id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "created": int(time.time()),
            "currency": currency,
            "destination": destination,
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "reversals": {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/transfers/{transfer_id}/reversals",
            },
            "reversed": False,
            "transfer_group": params.get("transfer_group"),
        }
        transfer["balance_transaction"] = self._book("transfer", transfer_id, -amount, 0, transfer)
        self.transfers[transfer_id] = transfer
        return 200, transfer

    def _list_transfers(
        self, params: dict[str, Any], _: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        limit = _int(params, "limit", required=False) or 10
        found = [
            t
            for t in reversed(list(self.transfers.values()))  # newest first, as Stripe lists
            if params.get("transfer_group") in (None, t["transfer_group"])
            and params.get("destination") in (None, t["destination"])
        ]
        return 200, {
            "object": "list",
            "data": found[:limit],
            "has_more": len(found) > limit,
            "url": "/v1/transfers",
        }

    def _get_transfer(self, _: dict[str, Any], match: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if match["id"] not in self.transfers:
            raise _invalid(f"No such transfer: '{match['id']}'", "resource_missing")
        return 200, self.transfers[match["id"]]

    def _reverse(self, params: dict[str, Any], match: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if match["id"] not in self.transfers:
            raise _invalid(f"No such transfer: '{match['id']}'", "resource_missing")
        transfer = self.transfers[match["id"]]
        left = transfer["amount"] - transfer["amount_reversed"]
        amount = _int(params, "amount", required=False) or left
        if amount > left:
            raise _invalid(
                "You have attempted to reverse more than the amount of the transfer.",
                "amount_too_large",
                "amount",
            )
        currency = transfer["currency"]
        balances = self.account_balances.setdefault(transfer["destination"], {})
        if balances.get(currency, 0) < amount:
            raise _invalid(
                "The destination account has insufficient funds to cover the reversal.",
                "balance_insufficient",
            )
        balances[currency] -= amount
        self.platform_balance[currency] = (
            self.platform_balance.get(currency, DEFAULT_PLATFORM_BALANCE) + amount
        )
        reversal = {
            "id": _new_id("trr"),
            "object": "transfer_reversal",
            "amount": amount,
            "created": int(time.time()),
            "currency": currency,
            "metadata": params.get("metadata") or {},
            "transfer": transfer["id"],
        }
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
        transfer["reversals"]["data"].insert(0, reversal)
        return 200, reversal

    # --- payment method domains ---------------------------------------------------------

    def _create_domain(
        self, params: dict[str, Any], _: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        name = params.get("domain_name")
        if not name:
            raise _invalid("Missing required param: domain_name.", "parameter_missing")
        for domain in self.domains.values():
            if domain["domain_name"] == name:
                return 200, domain
        domain_id = _new_id("pmd")
        self.domains[domain_id] = {
            "id": domain_id,
            "object": "payment_method_domain",
            "apple_pay": {"status": "active"},
            "created": int(time.time()),
            "domain_name": name,
            "enabled": True,
            "google_pay": {"status": "active"},
            "link": {"status": "active"},
            "livemode": False,
            "paypal": {"status": "active"},
        }
        return 200, self.domains[domain_id]

    def _list_domains(
        self, params: dict[str, Any], _: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """Newest first, paged by `starting_after`."""
        limit = _int(params, "limit", required=False) or 10
        found = list(reversed(list(self.domains.values())))
        after = params.get("starting_after")
        if after is not None:
            ids = [d["id"] for d in found]
            found = found[ids.index(after) + 1 :] if after in ids else []
        return 200, {
            "object": "list",
            "data": found[:limit],
            "has_more": len(found) > limit,
            "url": "/v1/payment_method_domains",
        }

    # --- disputes ------------------------------------------------------------------------

    def _dispute(self, dispute_id: str) -> dict[str, Any]:
        if dispute_id not in self.disputes:
            raise _invalid(f"No such dispute: '{dispute_id}'", "resource_missing")
        return self.disputes[dispute_id]

    def _get_dispute(self, _: dict[str, Any], match: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return 200, self._dispute(match["id"])

    @staticmethod
    def _check_evidence(evidence: Any) -> dict[str, str]:
        if not isinstance(evidence, dict):
            raise _invalid("Invalid hash", "parameter_invalid_hash", "evidence")
        total = 0
        for name, value in evidence.items():
            param = f"evidence[{name}]"
            if isinstance(value, dict):
                raise _invalid(f"Invalid string: {param}", "parameter_invalid_string", param)
            if name in EVIDENCE_FILES:
                if not re.fullmatch(r"file_\w+", value):
                    raise _invalid(f"No such file upload: '{value}'", "resource_missing", param)
            elif name in EVIDENCE_LONG_TEXT:
                if len(value) > EVIDENCE_FIELD_LIMIT:
                    raise _invalid(
                        f"{param} is limited to {EVIDENCE_FIELD_LIMIT} characters",
                        "parameter_invalid_string",
                        param,
                    )
            elif name not in EVIDENCE_SHORT_TEXT:
                raise _invalid(f"Received unknown parameter: {param}", "parameter_unknown", param)
            total += len(value)
        if total > EVIDENCE_TOTAL_LIMIT:
            raise _invalid(
                f"The combined character count of evidence is limited to {EVIDENCE_TOTAL_LIMIT}",
                "parameter_invalid_string",
                "evidence",
            )
        return dict(evidence)

    def _update_dispute(
        self, params: dict[str, Any], match: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        dispute = self._dispute(match["id"])
        unknown = set(params) - {"evidence", "submit", "metadata", "expand"}
        if unknown:
            name = sorted(unknown)[0]
            raise _invalid(f"Received unknown parameter: {name}", "parameter_unknown", name)
        submit = params.get("submit", "true")
        if submit not in ("true", "false"):
            raise _invalid("Invalid boolean", "parameter_invalid_boolean", "submit")
        evidence = self._check_evidence(params.get("evidence", {}))
        if dispute["status"] not in DISPUTE_TAKES_EVIDENCE:
            raise _invalid(
                f"This dispute is {dispute['status']} and can no longer be updated.",
                param="evidence",
            )
        dispute["evidence"] = {**dispute["evidence"], **evidence}
        details = dispute["evidence_details"]
        details["has_evidence"] = bool(dispute["evidence"])
        if submit == "true":
            details["submission_count"] += 1
            dispute["status"] = "under_review"
        return 200, dispute


@pytest.fixture
def stripe_double() -> Iterator[StripeDouble]:
    """A fresh double per test: its server thread is stopped when the test ends."""
    with StripeDouble() as double:
        yield double
