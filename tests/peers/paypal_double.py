"""A stateful PayPal of our own, served over HTTP on 127.0.0.1, for the adapter and
integration tests.

What it implements (the subset of PayPal's REST API our adapter uses):
- POST /v1/oauth2/token (client credentials, basic auth);
- Orders v2: create, get, authorize, plus `approve()` standing in for the buyer;
- Payments v2: authorizations get / capture / void / reauthorize, captures get / refund,
  refunds get;
- Payouts v1: create batch, get batch (paged), get item, plus `process_payouts()` standing in
  for PayPal's asynchronous processing;
- Customer disputes v1: provide-evidence (multipart, its `input` part's evidences checked
  against the spec's `evidence` schema), on disputes made with `add_dispute`;
- Vault v3: setup tokens, payment tokens, orders paid with a `vault_id`, plus
  `approve_setup()` standing in for the payer (tests/peers/paypal_vault_double.py);
- POST /v1/notifications/verify-webhook-signature, for deliveries the double itself signed
  with `deliver()` (also verifiable offline with `cert_pem`).

How it behaves like PayPal: `PayPal-Request-Id` makes a repeated POST answer the first
success again without acting twice (4xx refusals are replayed too with
`remember_failures=True`: PayPal does not document whether it keeps them);
a reused sender_batch_id is refused with a link to the original batch (or, as PayPal has
also answered, `duplicate_batch_link`: with the link in a detail, or none); wrong states answer
PayPal's error bodies (name, message, debug_id, details[].issue); faults can be injected
(`fail_next`): a 500 before or after acting, an answer that never comes (after acting),
429s.

Every request the client sends and every response the double gives is validated against
PayPal's official OpenAPI specs in ../shared/paypal-openapi/ (`SpecValidator`, built once
per test session); the known places where the specs cannot describe real traffic are
recorded as deviations, not violations (see `SpecValidator`). /v1/oauth2/token has no spec
and is counted as unspecified. When the folder is absent, validation is skipped and
`SpecValidator.reason` says so (the fixture turns it into a visible warning).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import socket
import string
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl

import httpx
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handwork_payments.kit.money import format_amount, normalize_currency, to_minor
from tests.peers.paypal_vault_double import VaultDouble

REPO_ROOT = Path(__file__).resolve().parents[2]
# PAYPAL_OPENAPI_DIR: the specs elsewhere (a git worktree that is not beside ../shared).
SPEC_DIR = Path(
    os.environ.get("PAYPAL_OPENAPI_DIR") or REPO_ROOT / ".." / "shared" / "paypal-openapi"
)
SPEC_FILES = {
    "orders": "checkout_orders_v2.json",
    "payments": "payments_payment_v2.json",
    "payouts": "payments_payouts_batch_v1.json",
    "webhooks": "notifications_webhooks_v1.json",
    "disputes": "customer_disputes_v1.json",
    "reporting": "reporting_transactions_v1.json",
    "vault": "vault_payment_tokens_v3.json",
}
# The spec servers: requests are validated as if sent to the sandbox, whatever port the
# double listens on.
SPEC_HOST = "https://api-m.sandbox.paypal.com"
# reporting_transactions_v1.json lists only the live server, and as
# "https://api-m.paypal.com/v1/reporting" while its paths repeat "/v1/reporting": the real
# "/v1/reporting/transactions" is matched by putting that prefix before it (a known
# deviation of the spec, counted).
SPEC_PREFIXES = {"reporting": ("https://api-m.paypal.com", "/v1/reporting")}
CERT_URL = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-double"


def _spec_for(path: str) -> str | None:
    if path.startswith("/v2/checkout/"):
        return "orders"
    if path.startswith("/v2/payments/"):
        return "payments"
    if path.startswith("/v1/payments/payouts"):
        return "payouts"
    if path.startswith("/v1/notifications/"):
        return "webhooks"
    if path.startswith("/v1/reporting/"):
        return "reporting"
    if path.startswith("/v1/customer/disputes"):
        return "disputes"
    if path.startswith("/v3/vault/"):
        return "vault"
    return None  # /v1/oauth2/token: PayPal publishes no OpenAPI spec for it


# --------------------------------------------------------------------------- validation


@dataclass
class _SpecRequest:
    """openapi-core's Request protocol over raw bytes."""

    method: str
    path: str
    body: bytes | None
    content_type: str
    parameters: Any
    host_url: str = SPEC_HOST


@dataclass
class _SpecResponse:
    status_code: int
    data: bytes | None
    content_type: str
    headers: Any


@dataclass
class ValidationReport:
    requests: int = 0
    responses: int = 0
    operations: Counter[str] = field(default_factory=Counter)
    unspecified: Counter[str] = field(default_factory=Counter)
    deviations: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)


class SpecValidator:
    """PayPal's OpenAPI specs, loaded once, validating exchanges with openapi-core.

    Known deviations (counted, not failures), each a place the official spec cannot
    describe genuine PayPal traffic:
    - verify-webhook-signature: every property of `webhook_event` is readOnly, so under
      OpenAPI 3.0 write rules no real event may be sent. The request is validated without
      it, and the event separately under read rules.
    - 429 answers: no spec lists 429, and the Orders / Payments default error is a oneOf of
      named errors without RATE_LIMIT_REACHED. Such answers are counted, not validated.
    - customer_disputes_v1.json is not valid OpenAPI 3.0 itself (the `dispute_state`
      parameter carries an `enum` outside its schema); it is loaded without the spec check
      and the failure is kept in `spec_errors`.
    - reporting_transactions_v1.json: its server URL ends in /v1/reporting and its paths
      start with /v1/reporting too; requests are matched with the base path doubled.
    - vault payment-tokens create: PayPal's guide exchanges a setup token with
      `payment_source.token.type` SETUP_TOKEN, which the spec's enum (BILLING_AGREEMENT
      only) lacks; the request is validated with BILLING_AGREEMENT in its place.
    - OAuth2 security: openapi-core cannot check oauth2 schemes, so a provider here checks
      for a Bearer token instead of warning "Unsupported scheme type".
    """

    def __init__(self, folder: Path = SPEC_DIR) -> None:
        self.folder = folder.resolve()
        self.report = ValidationReport()
        self._lock = threading.Lock()
        self._specs: dict[str, Any] = {}
        self.reason: str | None = None
        # Specs that fail openapi-spec-validator themselves, loaded without that check.
        self.spec_errors: dict[str, str] = {}
        missing = [f for f in SPEC_FILES.values() if not (self.folder / f).is_file()]
        if missing:
            self.reason = (
                f"PayPal OpenAPI specs not found in {self.folder} (missing {', '.join(missing)}):"
                " PayPal request/response validation is SKIPPED"
            )
            return
        from openapi_core import OpenAPI
        from openapi_core.configurations import Config

        security = _bearer_security_factory()
        for key, name in SPEC_FILES.items():
            path = str(self.folder / name)
            try:
                self._specs[key] = OpenAPI.from_file_path(
                    path, config=Config(security_provider_factory=security)
                )
            except Exception as exc:
                # The spec itself is not valid OpenAPI 3.0 (customer_disputes_v1.json puts
                # an `enum` beside a parameter's schema): use it unchecked, and say so.
                self.spec_errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                self._specs[key] = OpenAPI.from_file_path(
                    path,
                    config=Config(security_provider_factory=security, spec_validator_cls=None),
                )

    @property
    def enabled(self) -> bool:
        return bool(self._specs)

    def validate(
        self,
        operation: str,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
        status: int,
        response_headers: Mapping[str, str],
        response_body: bytes,
    ) -> list[str]:
        """Validate one exchange; returns (and records) the violations found."""
        if not self.enabled:
            return []
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        key = _spec_for(path)
        problems: list[str] = []
        if key is None:
            with self._lock:
                self.report.unspecified[operation] += 1
            return []
        spec = self._specs[key]
        request_body = body or None
        deviations: list[str] = []
        host, prefix = SPEC_PREFIXES.get(key, (SPEC_HOST, ""))
        if prefix:
            deviations.append(f"{key}: server URL and paths both carry the base path")
        if operation == "webhooks.verify" and body:
            request_body, event_problems = self._split_verify_request(spec, body)
            problems += event_problems
            deviations.append("verify-webhook-signature: webhook_event validated as read-only")
        if operation == "payment_tokens.create" and body:
            request_body, swapped = _setup_token_as_spec_knows(body)
            if swapped:
                deviations.append("vault payment-tokens: SETUP_TOKEN is not in the spec's enum")
        request = _SpecRequest(
            host_url=host,
            method=method.lower(),
            path=prefix + path,
            body=request_body,
            content_type=(headers.get("content-type") or "").lower(),
            parameters=RequestParameters(
                query=ImmutableMultiDict(query),
                header=Headers(dict(headers)),
                cookie=ImmutableMultiDict(),
                path={},
            ),
        )
        problems += [f"request: {_describe(e)}" for e in spec.iter_request_errors(request)]
        responses_checked = 0
        if status == 429:
            deviations.append("429 is not in PayPal's specs")
        else:
            response = _SpecResponse(
                status_code=status,
                data=response_body or None,
                content_type=(response_headers.get("content-type") or "").lower()
                if response_body
                else "",
                headers=Headers(dict(response_headers)),
            )
            problems += [
                f"response {status}: {_describe(e)}"
                for e in spec.iter_response_errors(request, response)
            ]
            responses_checked = 1
        problems = [f"{operation} {method} {path}: {p}" for p in problems]
        with self._lock:
            self.report.requests += 1
            self.report.responses += responses_checked
            self.report.operations[operation] += 1
            for deviation in deviations:
                self.report.deviations[deviation] += 1
            self.report.violations += problems
        return problems

    def _split_verify_request(self, spec: Any, body: bytes) -> tuple[bytes, list[str]]:
        from openapi_core.validation.schemas import oas30_read_schema_validators_factory

        try:
            payload = json.loads(body)
        except ValueError:
            return body, []
        if not isinstance(payload, dict) or "webhook_event" not in payload:
            return body, []
        event = payload["webhook_event"]
        payload["webhook_event"] = {}
        schema = spec.spec / "components" / "schemas" / "event"
        validator = oas30_read_schema_validators_factory.create(spec.spec, schema)
        try:
            validator.validate(event)
        except Exception as exc:
            return json.dumps(payload).encode(), [f"request webhook_event: {_describe(exc)}"]
        return json.dumps(payload).encode(), []

    def validate_schema(
        self, spec_key: str, schema_name: str, value: Any, *, sent: bool = False
    ) -> list[str]:
        """Validate a resource (e.g. a webhook's dispute) against a named schema of a spec,
        under read rules (what PayPal sends), or write rules when `sent` (what we send PayPal
        inside a body the spec leaves untyped, such as provide-evidence's `input` part)."""
        if not self.enabled:
            return []
        from openapi_core.validation.schemas import (
            oas30_read_schema_validators_factory,
            oas30_write_schema_validators_factory,
        )

        spec = self._specs[spec_key]
        schema = spec.spec / "components" / "schemas" / schema_name
        factory = (
            oas30_write_schema_validators_factory if sent else oas30_read_schema_validators_factory
        )
        validator = factory.create(spec.spec, schema)
        try:
            validator.validate(value)
        except Exception as exc:
            problem = f"{spec_key}#{schema_name}: {_describe(exc)}"
            with self._lock:
                self.report.violations.append(problem)
            return [problem]
        with self._lock:
            self.report.operations[f"schema:{spec_key}#{schema_name}"] += 1
        return []

    def forget(self, problems: list[str]) -> None:
        """Drop violations a test provoked on purpose (to prove they are caught), so the
        session summary counts only real ones."""
        with self._lock:
            for problem in problems:
                self.report.violations.remove(problem)

    def summary(self) -> str:
        if not self.enabled:
            return self.reason or "PayPal spec validation disabled"
        r = self.report
        return (
            f"PayPal spec validation: {r.requests} requests and {r.responses} responses validated"
            f" over {len(r.operations)} operations; unspecified (no spec): {dict(r.unspecified)};"
            f" known deviations: {dict(r.deviations)}; violations: {len(r.violations)};"
            f" specs invalid as OpenAPI 3.0: {sorted(self.spec_errors) or 'none'}"
        )


def _setup_token_as_spec_knows(body: bytes) -> tuple[bytes, bool]:
    """The payment-token request with token.type SETUP_TOKEN read as BILLING_AGREEMENT, the
    one value the spec's enum has (see SpecValidator's deviations)."""
    try:
        payload = json.loads(body)
        token = payload["payment_source"]["token"]
    except (ValueError, KeyError, TypeError):
        return body, False
    if not isinstance(token, dict) or token.get("type") != "SETUP_TOKEN":
        return body, False
    token["type"] = "BILLING_AGREEMENT"
    return json.dumps(payload).encode(), True


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__
    details = getattr(cause, "schema_errors", None) or getattr(exc, "schema_errors", None)
    if details:
        return f"{exc}: " + "; ".join(getattr(d, "message", str(d)) for d in details)
    return f"{type(exc).__name__}: {exc}" + (f" ({cause})" if cause else "")


def _bearer_security_factory() -> Any:
    """openapi-core warns "Unsupported scheme type" for oauth2 and checks nothing; PayPal's
    oauth2 scheme means "Authorization: Bearer <token>", so check exactly that."""
    from openapi_core.security.exceptions import SecurityProviderError
    from openapi_core.security.factories import SecurityProviderFactory
    from openapi_core.security.providers import BaseProvider

    class BearerProvider(BaseProvider):
        def __call__(self, parameters: Any) -> Any:
            value = parameters.header.get("Authorization", "")
            if not value.startswith("Bearer ") or len(value) <= len("Bearer "):
                raise SecurityProviderError("missing Bearer token")
            return value

    class Factory(SecurityProviderFactory):
        PROVIDERS = {**SecurityProviderFactory.PROVIDERS, "oauth2": BearerProvider}

    return Factory()


# --------------------------------------------------------------------------- signing

_KEY_AND_CERT: tuple[rsa.RSAPrivateKey, bytes] | None = None


def signing_key_and_cert() -> tuple[rsa.RSAPrivateKey, bytes]:
    """The double's "PayPal" signing key and its self-signed certificate (PEM), made once
    per process: RSA key generation is the slow part."""
    global _KEY_AND_CERT
    if _KEY_AND_CERT is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "double.paypal.example")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        _KEY_AND_CERT = (key, cert.public_bytes(serialization.Encoding.PEM))
    return _KEY_AND_CERT


def sign_transmission(
    key: rsa.RSAPrivateKey,
    transmission_id: str,
    transmission_time: str,
    webhook_id: str,
    body: bytes,
) -> str:
    crc = zlib.crc32(body) & 0xFFFFFFFF
    message = f"{transmission_id}|{transmission_time}|{webhook_id}|{crc}".encode()
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


# --------------------------------------------------------------------------- the double

FaultMode = Literal["500_before", "500_after", "timeout_after", "429"]

ERRORS: dict[int, tuple[str, str]] = {
    400: (
        "INVALID_REQUEST",
        "Request is not well-formed, syntactically incorrect, or violates schema.",
    ),
    401: (
        "AUTHENTICATION_FAILURE",
        "Authentication failed due to missing authorization header, or invalid authentication"
        " credentials.",
    ),
    403: ("NOT_AUTHORIZED", "Authorization failed due to insufficient permissions."),
    404: ("RESOURCE_NOT_FOUND", "The specified resource does not exist."),
    409: ("RESOURCE_CONFLICT", "The server has detected a conflict while processing this request."),
    422: (
        "UNPROCESSABLE_ENTITY",
        "The requested action could not be performed, semantically incorrect, or failed"
        " business validation.",
    ),
    500: ("INTERNAL_SERVER_ERROR", "An internal server error occurred."),
}


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    operation: str
    method: str
    path: str
    request_id: str | None
    status: int
    replayed: bool = False


@dataclass
class _Ctx:
    operation: str
    params: dict[str, str]
    headers: Mapping[str, str]
    query: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else {}

    @property
    def representation(self) -> bool:
        return "return=representation" in (self.headers.get("prefer") or "")


class PayPalError(Exception):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply


def _id(length: int = 17) -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(length))


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class PayPalDouble(VaultDouble):
    """Start with `with PayPalDouble(validator) as double:`; point PAYPAL_API_BASE at
    `double.url`. State is inspectable (`orders`, `authorizations`, `captures`, `refunds`,
    `batches`, `items`, `calls`, `debug_ids`) and guarded by one lock, as the server runs in
    its own thread."""

    # Operations whose PayPal-Request-Id replays answer 200 (the spec's "idempotent request").
    REPLAY_200 = frozenset({"orders.create", "orders.authorize"})

    def __init__(
        self,
        validator: SpecValidator | None = None,
        *,
        client_id: str = "double-client-id",
        client_secret: str = "double-client-secret",
        webhook_id: str = "8PT597110X687430L",
        token_lifetime_seconds: int = 32400,
        stall_seconds: float = 3.0,
        remember_failures: bool = False,
        duplicate_batch_link: Literal["links", "details", "none"] = "links",
    ) -> None:
        self.validator = validator
        self.remember_failures = remember_failures
        # Where the refusal of a reused sender_batch_id links the original batch.
        self.duplicate_batch_link = duplicate_batch_link
        self.client_id = client_id
        self.client_secret = client_secret
        self.webhook_id = webhook_id
        self.token_lifetime_seconds = token_lifetime_seconds
        self.stall_seconds = stall_seconds
        self.lock = threading.RLock()
        self.clock_offset = timedelta()
        self.orders: dict[str, dict[str, Any]] = {}
        self.authorizations: dict[str, dict[str, Any]] = {}
        self.captures: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.setup_tokens: dict[str, dict[str, Any]] = {}
        self.payment_tokens: dict[str, dict[str, Any]] = {}
        # Transaction Search: the account's lines (transaction_details), oldest first.
        self.transactions: list[dict[str, Any]] = []
        self.sender_batch_ids: dict[str, str] = {}
        self.tokens: dict[str, float] = {}
        self.tokens_issued = 0
        self.request_ids: dict[tuple[str, str], Reply] = {}
        self.transmissions: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.debug_ids: list[str] = []
        self.violations: list[str] = []
        self.validated = 0
        self.validated_ops: Counter[str] = Counter()
        self.faults: dict[str, list[FaultMode]] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._stopping = False
        self.url = ""

    # ------------------------------------------------------------------- lifecycle

    def __enter__(self) -> PayPalDouble:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))  # loopback only, a free port
        sock.listen(64)
        self._socket = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            self.app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="paypal-double", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the PayPal double did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), "the PayPal double did not stop"
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    # ------------------------------------------------------------------- test controls

    def now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def advance(self, **delta: float) -> None:
        """Move the double's business clock (authorisation expiry) forward."""
        with self.lock:
            self.clock_offset += timedelta(**delta)

    def fail_next(self, operation: str, mode: FaultMode, times: int = 1) -> None:
        """The next `times` calls of `operation` (e.g. "authorizations.capture") fail:
        500 before or after acting, no answer after acting (stalls past the client's
        timeout), or 429 without acting."""
        with self.lock:
            self.faults.setdefault(operation, []).extend([mode] * times)

    def revoke_tokens(self) -> None:
        """Every issued token stops working (PayPal rotated them): the next call gets 401."""
        with self.lock:
            self.tokens.clear()

    def forget_request_ids(self) -> None:
        """PayPal keeps request ids for a limited time (30-45 days); this ends it now."""
        with self.lock:
            self.request_ids.clear()

    def approve(
        self,
        order_id: str,
        *,
        payer_id: str = "QYR5Z8XDVJNXQ",
        email: str = "buyer@example.com",
        decline: str | None = None,
    ) -> None:
        """The buyer approves the order at PayPal. `decline` = the issue the authorisation
        will then fail with (e.g. "PAYER_CANNOT_PAY")."""
        with self.lock:
            order = self.orders[order_id]
            assert order["status"] in ("CREATED", "PAYER_ACTION_REQUIRED"), order["status"]
            order["status"] = "APPROVED"
            order["payer"] = {
                "payer_id": payer_id,
                "email_address": email,
                "name": {"given_name": "Test", "surname": "Buyer"},
            }
            order["decline"] = decline
            order["update_time"] = self.now()

    def process_payouts(self) -> None:
        """PayPal's asynchronous payout processing: every pending item settles by its
        receiver's tag (+unclaimed, +fail, +returned, +onhold, +blocked; else SUCCESS)."""
        with self.lock:
            for batch in self.batches.values():
                for item_id in batch["item_ids"]:
                    item = self.items[item_id]
                    if item["transaction_status"] != "PENDING":
                        continue
                    receiver = item["payout_item"]["receiver"]
                    status, error = "SUCCESS", None
                    for tag, outcome, name, message in (
                        (
                            "+unclaimed",
                            "UNCLAIMED",
                            "RECEIVER_UNREGISTERED",
                            "Receiver is unregistered",
                        ),
                        (
                            "+fail",
                            "FAILED",
                            "RECEIVER_ACCOUNT_LOCKED",
                            "Receiver account is locked or inactive",
                        ),
                        (
                            "+returned",
                            "RETURNED",
                            "RECEIVER_REFUSED",
                            "Receiver refused the payment",
                        ),
                        ("+onhold", "ONHOLD", None, None),
                        ("+blocked", "BLOCKED", "RISK_DECLINE", "Transaction declined due to risk"),
                    ):
                        if tag in receiver:
                            status = outcome
                            if name:
                                error = {
                                    "name": name,
                                    "message": message,
                                    "debug_id": self._debug_id(),
                                }
                    item["transaction_status"] = status
                    item["errors"] = error
                    item["time_processed"] = self.now()
                    if status == "SUCCESS":
                        item["transaction_id"] = _id(17)
                        self._transaction(
                            "T0001",
                            item["transaction_id"],
                            -item["amount"],
                            0,
                            item["currency"],
                            item["time_processed"],
                            reference=item_id,
                        )
                batch["batch_status"] = "SUCCESS"
                batch["time_completed"] = self.now()

    def set_payout_status(self, payout_item_id: str, status: str) -> None:
        with self.lock:
            self.items[payout_item_id]["transaction_status"] = status

    def deliver(self, event_type: str, resource: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
        """A webhook delivery as PayPal would POST it: the transmission headers and the raw
        body, signed with the double's key for its webhook id."""
        key, _ = signing_key_and_cert()
        event = {
            "id": f"WH-{_id(17)}-{_id(17)}",
            "event_version": "1.0",
            "create_time": _stamp(self.now()),
            "resource_type": event_type.split(".")[-2].lower(),
            "resource_version": "2.0",
            "event_type": event_type,
            "summary": f"{event_type} (double)",
            "resource": dict(resource),
            "links": [],
        }
        body = json.dumps(event).encode()
        transmission_time = _stamp(datetime.now(UTC))
        # The spec's transmission_sig pattern (^(?!\d+$)\w+\S+) refuses a base64 signature
        # starting with "+" or "/" (1 in 32 real ones); pick a transmission whose signature
        # the spec accepts so the verify request stays valid.
        for _ in range(64):
            transmission_id = str(uuid.uuid4())
            signature = sign_transmission(
                key, transmission_id, transmission_time, self.webhook_id, body
            )
            if signature[0].isalnum():
                break
        headers = {
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": transmission_time,
            "PAYPAL-TRANSMISSION-SIG": signature,
            "PAYPAL-CERT-URL": CERT_URL,
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        }
        with self.lock:
            self.transmissions[transmission_id] = {"body": body, "signature": signature}
        return headers, body

    @property
    def cert_pem(self) -> bytes:
        return signing_key_and_cert()[1]

    # resources as webhooks carry them
    def authorization_resource(self, authorization_id: str) -> dict[str, Any]:
        with self.lock:
            return self._authorization(self.authorizations[authorization_id], full=True)

    def capture_resource(self, capture_id: str) -> dict[str, Any]:
        with self.lock:
            return self._capture(self.captures[capture_id], full=True)

    def refund_resource(self, refund_id: str) -> dict[str, Any]:
        with self.lock:
            return self._refund(self.refunds[refund_id])

    def payout_item_resource(self, payout_item_id: str) -> dict[str, Any]:
        with self.lock:
            return self._payout_item(self.items[payout_item_id], with_sender_batch=True)

    # ------------------------------------------------------------------- Transaction Search

    def _transaction(
        self,
        code: str,
        transaction_id: str,
        amount: int,
        fee: int,
        currency: str,
        when: datetime,
        *,
        reference: str | None = None,
    ) -> None:
        info: dict[str, Any] = {
            "transaction_id": transaction_id,
            "transaction_event_code": code,
            "transaction_initiation_date": _stamp(when),
            "transaction_updated_date": _stamp(when),
            "transaction_amount": self._money(amount, currency),
            "fee_amount": self._money(-fee, currency),
            "transaction_status": "S",
        }
        if reference is not None:
            info["paypal_reference_id"] = reference
            info["paypal_reference_id_type"] = "TXN"
        self.transactions.append({"transaction_info": info, "_when": when})

    def op_transactions(self, ctx: _Ctx) -> Reply:
        """GET /v1/reporting/transactions: lines in [start_date, end_date], paged."""
        try:
            start = datetime.fromisoformat(ctx.query["start_date"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(ctx.query["end_date"].replace("Z", "+00:00"))
        except (KeyError, ValueError):
            raise self._fail(400, "INVALID_REQUEST") from None
        if end - start > timedelta(days=31):
            raise self._fail(400, "INVALID_REQUEST")
        size = int(ctx.query.get("page_size", "100"))
        page = int(ctx.query.get("page", "1"))
        found = [
            {"transaction_info": t["transaction_info"]}
            for t in self.transactions
            if start <= t["_when"] <= end
        ]
        pages = max(1, -(-len(found) // size))
        return Reply(
            200,
            {
                "transaction_details": found[(page - 1) * size : page * size],
                "account_number": "DOUBLE1234567",
                "start_date": _stamp(start),
                "end_date": _stamp(end),
                "last_refreshed_datetime": _stamp(self.now()),
                "page": page,
                "total_items": len(found),
                "total_pages": pages,
                "links": [
                    self._link(f"/v1/reporting/transactions?page={page}", "self"),
                    *(
                        [self._link(f"/v1/reporting/transactions?page={page + 1}", "next")]
                        if page < pages
                        else []
                    ),
                ],
            },
        )

    # ------------------------------------------------------------------- HTTP plumbing

    def _routes(self) -> list[tuple[str, str, str, Callable[[_Ctx], Reply]]]:
        return [
            ("POST", "/v1/oauth2/token", "oauth.token", self.op_token),
            ("POST", "/v2/checkout/orders", "orders.create", self.op_order_create),
            ("GET", "/v2/checkout/orders/{id}", "orders.get", self.op_order_get),
            ("POST", "/v2/checkout/orders/{id}/authorize", "orders.authorize", self.op_authorize),
            ("GET", "/v2/payments/authorizations/{id}", "authorizations.get", self.op_auth_get),
            (
                "POST",
                "/v2/payments/authorizations/{id}/capture",
                "authorizations.capture",
                self.op_capture,
            ),
            ("POST", "/v2/payments/authorizations/{id}/void", "authorizations.void", self.op_void),
            (
                "POST",
                "/v2/payments/authorizations/{id}/reauthorize",
                "authorizations.reauthorize",
                self.op_reauthorize,
            ),
            ("GET", "/v2/payments/captures/{id}", "captures.get", self.op_capture_get),
            ("POST", "/v2/payments/captures/{id}/refund", "captures.refund", self.op_refund),
            ("GET", "/v2/payments/refunds/{id}", "refunds.get", self.op_refund_get),
            ("POST", "/v1/payments/payouts", "payouts.create", self.op_payout_create),
            ("GET", "/v1/payments/payouts/{id}", "payouts.get", self.op_payout_get),
            ("GET", "/v1/payments/payouts-item/{id}", "payouts_item.get", self.op_item_get),
            ("GET", "/v1/reporting/transactions", "reporting.transactions", self.op_transactions),
            (
                "POST",
                "/v1/customer/disputes/{id}/provide-evidence",
                "disputes.provide_evidence",
                self.op_provide_evidence,
            ),
            (
                "POST",
                "/v1/notifications/verify-webhook-signature",
                "webhooks.verify",
                self.op_verify,
            ),
            *self._vault_routes(),
        ]

    def app(self) -> Starlette:
        routes = []
        for method, path, operation, handler in self._routes():
            routes.append(Route(path, self._endpoint(operation, handler), methods=[method]))
        return Starlette(routes=routes)

    def _endpoint(
        self, operation: str, handler: Callable[[_Ctx], Reply]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            query_pairs = parse_qsl(request.url.query, keep_blank_values=True)
            ctx = _Ctx(operation, dict(request.path_params), headers, dict(query_pairs), raw)
            request_id = headers.get("paypal-request-id")
            reply, replayed, stall = self._handle(ctx, handler, request_id)
            body = json.dumps(reply.body).encode() if reply.body is not None else b""
            response_headers = dict(reply.headers)
            if body:
                response_headers["content-type"] = "application/json"
            if self.validator is not None:
                problems = self.validator.validate(
                    operation,
                    request.method,
                    request.url.path,
                    query_pairs,
                    headers,
                    raw,
                    reply.status,
                    response_headers,
                    body,
                )
                with self.lock:
                    self.violations += problems
                    if self.validator.enabled:
                        self.validated += 1
                        self.validated_ops[operation] += 1
            with self.lock:
                self.calls.append(
                    Call(
                        operation,
                        request.method,
                        request.url.path,
                        request_id,
                        reply.status,
                        replayed,
                    )
                )
            if stall:
                # The answer never comes in time: the client times out not knowing it acted.
                for _ in range(int(self.stall_seconds / 0.02)):
                    if self._stopping:
                        break
                    await asyncio.sleep(0.02)
            return Response(body, status_code=reply.status, headers=response_headers)

        return endpoint

    def _handle(
        self, ctx: _Ctx, handler: Callable[[_Ctx], Reply], request_id: str | None
    ) -> tuple[Reply, bool, bool]:
        with self.lock:
            if ctx.operation != "oauth.token" and not self._authorized(ctx):
                return self._error(401), False, False
            fault = self.faults.get(ctx.operation, [])
            mode = fault.pop(0) if fault else None
            if mode == "429":
                return (
                    Reply(
                        429,
                        {
                            "name": "RATE_LIMIT_REACHED",
                            "message": "Too many requests.",
                            "debug_id": self._debug_id(),
                        },
                        {"Retry-After": "0"},
                    ),
                    False,
                    False,
                )
            if mode == "500_before":
                return self._error(500), False, False
            key = (ctx.operation, request_id) if request_id else None
            if key is not None and key in self.request_ids:
                stored = self.request_ids[key]
                replay_200 = ctx.operation in self.REPLAY_200 and stored.status < 300
                status = 200 if replay_200 else stored.status
                reply, replayed = Reply(status, stored.body, dict(stored.headers)), True
            else:
                try:
                    reply = handler(ctx)
                except PayPalError as exc:
                    reply = exc.reply
                replayed = False
                # PayPal keeps what a request id did; whether it also keeps refusals is not
                # documented, so both are possible here (remember_failures).
                remembered = reply.status < 300 or (self.remember_failures and reply.status < 500)
                if key is not None and remembered:
                    self.request_ids[key] = reply
            if mode == "500_after":
                return self._error(500), replayed, False
            return reply, replayed, mode == "timeout_after"

    def _authorized(self, ctx: _Ctx) -> bool:
        value = ctx.headers.get("authorization", "")
        token = value[len("Bearer ") :] if value.startswith("Bearer ") else ""
        expires = self.tokens.get(token)
        return expires is not None and time.monotonic() < expires

    def _debug_id(self) -> str:
        debug_id = secrets.token_hex(7)[:13]
        self.debug_ids.append(debug_id)
        return debug_id

    def _error(
        self,
        status: int,
        issue: str | None = None,
        *,
        name: str | None = None,
        message: str | None = None,
        description: str | None = None,
        field_name: str | None = None,
        links: list[dict[str, str]] | None = None,
    ) -> Reply:
        default_name, default_message = ERRORS[status]
        body: dict[str, Any] = {
            "name": name or default_name,
            "message": message or default_message,
            "debug_id": self._debug_id(),
        }
        if issue:
            detail: dict[str, Any] = {"issue": issue}
            if description:
                detail["description"] = description
            if field_name:
                detail["field"] = field_name
                detail["location"] = "body"
            body["details"] = [detail]
        if links:
            body["links"] = links
        return Reply(status, body, {"PayPal-Debug-Id": body["debug_id"]})

    def _fail(self, status: int, issue: str | None = None, **kwargs: Any) -> PayPalError:
        return PayPalError(self._error(status, issue, **kwargs))

    def _link(self, path: str, rel: str, method: str = "GET") -> dict[str, str]:
        return {"href": f"{SPEC_HOST}{path}", "rel": rel, "method": method}

    # ------------------------------------------------------------------- money

    def _minor(
        self, money: Mapping[str, Any], currency_key: str = "currency_code"
    ) -> tuple[int, str]:
        currency = normalize_currency(str(money[currency_key]))
        value = str(money["value"])
        # PayPal takes these in whole units (HUF and TWD although ISO gives them decimals).
        if currency in ("HUF", "TWD", "JPY") and "." in value:
            raise self._fail(422, "DECIMALS_NOT_SUPPORTED")
        try:
            return to_minor(value, currency), currency
        except ValueError:
            raise self._fail(422, "DECIMAL_PRECISION") from None

    @staticmethod
    def _money(amount: int, currency: str, key: str = "currency_code") -> dict[str, str]:
        value = format_amount(amount, currency)
        if currency in ("HUF", "TWD"):
            value = str(amount // 100)
        return {key: currency, "value": value}

    # ------------------------------------------------------------------- OAuth2

    def op_token(self, ctx: _Ctx) -> Reply:
        form = dict(parse_qsl(ctx.raw.decode()))
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if (
            ctx.headers.get("authorization") != f"Basic {expected}"
            or form.get("grant_type") != "client_credentials"
        ):
            return Reply(
                401,
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
            )
        token = "A21AA" + secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + self.token_lifetime_seconds
        self.tokens_issued += 1
        return Reply(
            200,
            {
                "scope": "https://uri.paypal.com/services/payments/payment https://uri.paypal.com/payments/payouts",
                "access_token": token,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": self.token_lifetime_seconds,
                "nonce": f"{_stamp(datetime.now(UTC))}{secrets.token_hex(8)}",
            },
        )

    # ------------------------------------------------------------------- orders

    def op_order_create(self, ctx: _Ctx) -> Reply:
        body = ctx.json
        units = body.get("purchase_units") or []
        if len(units) != 1:
            raise self._fail(
                422, "MULTIPLE_PURCHASE_UNITS" if units else "MISSING_REQUIRED_PARAMETER"
            )
        unit = units[0]
        amount, currency = self._minor(unit["amount"])
        if amount <= 0:
            raise self._fail(422, "CANNOT_BE_ZERO_OR_NEGATIVE")
        paypal = (body.get("payment_source") or {}).get("paypal") or {}
        experience = paypal.get("experience_context")
        vaulted = self.vaulted_payer(paypal["vault_id"]) if paypal.get("vault_id") else None
        order_id = _id()
        now = self.now()
        self.orders[order_id] = {
            "id": order_id,
            "intent": body["intent"],
            "status": "PAYER_ACTION_REQUIRED" if experience is not None else "CREATED",
            "unit": unit,
            "amount": amount,
            "currency": currency,
            "experience": experience,
            "payer": None,
            "decline": None,
            "authorization_ids": [],
            "create_time": now,
            "update_time": now,
        }
        if vaulted is not None:
            self._pay_with_token(self.orders[order_id], vaulted)
        return Reply(201, self._order(self.orders[order_id], ctx.representation))

    def _pay_with_token(self, order: dict[str, Any], token: dict[str, Any]) -> None:
        """A saved PayPal pays, nobody to approve: authorised at once (DENIED for a payer
        whose charges are declined), the order COMPLETED."""
        order["status"] = "APPROVED"
        order["payer"] = {
            "payer_id": token["paypal"]["payer_id"],
            "email_address": token["paypal"]["email_address"],
            "name": {"given_name": "Test", "surname": "Buyer"},
        }
        order["vault_id"] = token["id"]
        if not self.vault_authorizes_at_creation:
            # Left APPROVED: the merchant's authorize call completes it.
            order["decline"] = "PAYER_CANNOT_PAY" if token["declines"] else None
            return
        self._authorize(order)
        if token["declines"]:
            self.authorizations[order["authorization_ids"][-1]]["status"] = "DENIED"

    def _get_order(self, order_id: str) -> dict[str, Any]:
        order = self.orders.get(order_id)
        if order is None:
            raise self._fail(404, "INVALID_RESOURCE_ID")
        return order

    def op_order_get(self, ctx: _Ctx) -> Reply:
        return Reply(200, self._order(self._get_order(ctx.params["id"]), True))

    def op_authorize(self, ctx: _Ctx) -> Reply:
        order = self._get_order(ctx.params["id"])
        if order["intent"] != "AUTHORIZE":
            raise self._fail(422, "ACTION_DOES_NOT_MATCH_INTENT")
        if order["authorization_ids"]:
            raise self._fail(422, "ORDER_ALREADY_AUTHORIZED")
        if order["status"] != "APPROVED":
            raise self._fail(422, "ORDER_NOT_APPROVED")
        if order["decline"]:
            raise self._fail(422, order["decline"])
        self._authorize(order)
        return Reply(201, self._order(order, ctx.representation))

    def _authorize(self, order: dict[str, Any]) -> None:
        now = self.now()
        auth_id = _id()
        self.authorizations[auth_id] = {
            "id": auth_id,
            "order_id": order["id"],
            "status": "CREATED",
            "amount": order["amount"],
            "currency": order["currency"],
            "captured": 0,
            "capture_ids": [],
            "custom_id": order["unit"].get("custom_id"),
            "invoice_id": order["unit"].get("invoice_id"),
            "create_time": now,
            "update_time": now,
            # PayPal: valid 29 days, honoured (funds guaranteed) for the first 3.
            "expiration_time": now + timedelta(days=29),
        }
        order["authorization_ids"].append(auth_id)
        order["status"] = "COMPLETED"
        order["update_time"] = now

    def _order(self, order: dict[str, Any], full: bool) -> dict[str, Any]:
        order_id = order["id"]
        links = [self._link(f"/v2/checkout/orders/{order_id}", "self")]
        if order["status"] in ("CREATED", "PAYER_ACTION_REQUIRED"):
            rel = "payer-action" if order["experience"] is not None else "approve"
            links.append(
                {
                    "href": f"https://www.sandbox.paypal.com/checkoutnow?token={order_id}",
                    "rel": rel,
                    "method": "GET",
                }
            )
        if order["status"] == "APPROVED":
            links.append(
                self._link(f"/v2/checkout/orders/{order_id}/authorize", "authorize", "POST")
            )
        if not full:
            return {"id": order_id, "status": order["status"], "links": links}
        unit: dict[str, Any] = {
            key: order["unit"][key]
            for key in ("reference_id", "description", "custom_id", "invoice_id")
            if key in order["unit"]
        }
        unit["amount"] = self._money(order["amount"], order["currency"])
        auths = [self.authorizations[a] for a in order["authorization_ids"]]
        if auths:
            capture_ids = [c for a in auths for c in a["capture_ids"]]
            refund_ids = [r for c in capture_ids for r in self.captures[c]["refund_ids"]]
            payments: dict[str, Any] = {
                "authorizations": [self._authorization(a, full=False) for a in auths]
            }
            if capture_ids:
                payments["captures"] = [
                    self._capture(self.captures[c], full=False) for c in capture_ids
                ]
            if refund_ids:
                payments["refunds"] = [
                    self._refund(self.refunds[r], in_order=True) for r in refund_ids
                ]
            unit["payments"] = payments
        result: dict[str, Any] = {
            "id": order_id,
            "intent": order["intent"],
            "status": order["status"],
            "purchase_units": [unit],
            "create_time": _stamp(order["create_time"]),
            "update_time": _stamp(order["update_time"]),
            "links": links,
        }
        if order["payer"] is not None:
            result["payer"] = order["payer"]
            result["payment_source"] = {
                "paypal": {
                    "email_address": order["payer"]["email_address"],
                    "account_id": order["payer"]["payer_id"],
                }
            }
        return result

    # ------------------------------------------------------------------- payments

    def _get_auth(self, auth_id: str) -> dict[str, Any]:
        auth = self.authorizations.get(auth_id)
        if auth is None:
            raise self._fail(404, "INVALID_RESOURCE_ID")
        return auth

    def _authorization(self, auth: dict[str, Any], *, full: bool) -> dict[str, Any]:
        auth_id = auth["id"]
        links = [self._link(f"/v2/payments/authorizations/{auth_id}", "self")]
        if auth["status"] == "CREATED":
            links += [
                self._link(f"/v2/payments/authorizations/{auth_id}/capture", "capture", "POST"),
                self._link(f"/v2/payments/authorizations/{auth_id}/void", "void", "POST"),
                self._link(
                    f"/v2/payments/authorizations/{auth_id}/reauthorize", "reauthorize", "POST"
                ),
            ]
        links.append(self._link(f"/v2/checkout/orders/{auth['order_id']}", "up"))
        result: dict[str, Any] = {
            "id": auth_id,
            "status": auth["status"],
            "amount": self._money(auth["amount"], auth["currency"]),
            "expiration_time": _stamp(auth["expiration_time"]),
            "create_time": _stamp(auth["create_time"]),
            "update_time": _stamp(auth["update_time"]),
            "seller_protection": {
                "status": "ELIGIBLE",
                "dispute_categories": ["ITEM_NOT_RECEIVED", "UNAUTHORIZED_TRANSACTION"],
            },
            "links": links,
        }
        for key in ("custom_id", "invoice_id"):
            if auth.get(key):
                result[key] = auth[key]
        if full:
            result["supplementary_data"] = {"related_ids": {"order_id": auth["order_id"]}}
        return result

    def op_auth_get(self, ctx: _Ctx) -> Reply:
        return Reply(200, self._authorization(self._get_auth(ctx.params["id"]), full=True))

    def _check_capturable(self, auth: dict[str, Any]) -> None:
        if auth["status"] == "VOIDED":
            raise self._fail(422, "AUTHORIZATION_VOIDED")
        if auth["status"] in ("CAPTURED",):
            raise self._fail(422, "AUTHORIZATION_ALREADY_CAPTURED")
        if auth["status"] == "DENIED":
            raise self._fail(422, "AUTHORIZATION_DENIED")
        if self.now() > auth["expiration_time"]:
            raise self._fail(422, "AUTHORIZATION_EXPIRED")

    def op_capture(self, ctx: _Ctx) -> Reply:
        auth = self._get_auth(ctx.params["id"])
        self._check_capturable(auth)
        body = ctx.json
        if body.get("amount"):
            amount, currency = self._minor(body["amount"])
        else:
            amount, currency = auth["amount"] - auth["captured"], auth["currency"]
        if currency != auth["currency"]:
            raise self._fail(422, "AUTH_CAPTURE_CURRENCY_MISMATCH")
        if amount <= 0:
            raise self._fail(422, "CANNOT_BE_ZERO_OR_NEGATIVE")
        # PayPal lets a capture exceed the authorisation by up to 115%; more is refused.
        if (auth["captured"] + amount) * 100 > auth["amount"] * 115:
            raise self._fail(422, "MAX_CAPTURE_AMOUNT_EXCEEDED")
        final = bool(body.get("final_capture", False))
        now = self.now()
        capture_id = _id()
        # PayPal's standard commercial rate: 3.49% (rounded half up) + a 49 fixed fee.
        fee = (amount * 349 + 5000) // 10000 + 49
        self._transaction("T0006", capture_id, amount, fee, currency, now)
        self.captures[capture_id] = {
            "id": capture_id,
            "authorization_id": auth["id"],
            "order_id": auth["order_id"],
            "status": "COMPLETED",
            "amount": amount,
            "currency": currency,
            "refunded": 0,
            "refund_ids": [],
            "final_capture": final,
            "paypal_fee": fee,
            "custom_id": auth.get("custom_id"),
            "invoice_id": auth.get("invoice_id"),
            "create_time": now,
            "update_time": now,
        }
        auth["captured"] += amount
        auth["capture_ids"].append(capture_id)
        auth["status"] = (
            "CAPTURED" if final or auth["captured"] >= auth["amount"] else "PARTIALLY_CAPTURED"
        )
        auth["update_time"] = now
        return Reply(
            201,
            self._capture(
                self.captures[capture_id], full=ctx.representation, minimal=not ctx.representation
            ),
        )

    def op_void(self, ctx: _Ctx) -> Reply:
        auth = self._get_auth(ctx.params["id"])
        if auth["status"] == "VOIDED":
            raise self._fail(422, "PREVIOUSLY_VOIDED")
        if auth["status"] in ("CAPTURED", "PARTIALLY_CAPTURED"):
            raise self._fail(422, "PREVIOUSLY_CAPTURED")
        auth["status"] = "VOIDED"
        auth["update_time"] = self.now()
        if ctx.representation:
            return Reply(200, self._authorization(auth, full=True))
        return Reply(204)

    def op_reauthorize(self, ctx: _Ctx) -> Reply:
        # Modelled: a reauthorisation is a new authorisation with a fresh 3-day honour period
        # inside the original 29 days; the original is voided so the money is reserved once.
        # PayPal's honour-period timing rules are not enforced here.
        auth = self._get_auth(ctx.params["id"])
        if auth["status"] == "VOIDED":
            raise self._fail(422, "AUTHORIZATION_VOIDED")
        if auth["status"] in ("CAPTURED", "PARTIALLY_CAPTURED"):
            raise self._fail(422, "AUTHORIZATION_ALREADY_CAPTURED")
        amount, currency = (
            self._minor(ctx.json["amount"])
            if ctx.json.get("amount")
            else (auth["amount"], auth["currency"])
        )
        if currency != auth["currency"]:
            raise self._fail(422, "AUTH_CURRENCY_MISMATCH")
        if amount <= 0:
            raise self._fail(422, "CANNOT_BE_ZERO_OR_NEGATIVE")
        now = self.now()
        new_id = _id()
        self.authorizations[new_id] = {
            **auth,
            "id": new_id,
            "status": "CREATED",
            "amount": amount,
            "captured": 0,
            "capture_ids": [],
            "create_time": now,
            "update_time": now,
        }
        auth["status"] = "VOIDED"
        auth["update_time"] = now
        self.orders[auth["order_id"]]["authorization_ids"].append(new_id)
        return Reply(201, self._authorization(self.authorizations[new_id], full=True))

    def _capture(
        self, capture: dict[str, Any], *, full: bool, minimal: bool = False
    ) -> dict[str, Any]:
        capture_id = capture["id"]
        links = [
            self._link(f"/v2/payments/captures/{capture_id}", "self"),
            self._link(f"/v2/payments/captures/{capture_id}/refund", "refund", "POST"),
            self._link(f"/v2/payments/authorizations/{capture['authorization_id']}", "up"),
        ]
        if minimal:
            return {"id": capture_id, "status": capture["status"], "links": links}
        result: dict[str, Any] = {
            "id": capture_id,
            "status": capture["status"],
            "amount": self._money(capture["amount"], capture["currency"]),
            "final_capture": capture["final_capture"],
            "seller_protection": {"status": "ELIGIBLE"},
            "seller_receivable_breakdown": {
                "gross_amount": self._money(capture["amount"], capture["currency"]),
                "paypal_fee": self._money(capture["paypal_fee"], capture["currency"]),
                "net_amount": self._money(
                    capture["amount"] - capture["paypal_fee"], capture["currency"]
                ),
            },
            "create_time": _stamp(capture["create_time"]),
            "update_time": _stamp(capture["update_time"]),
            "links": links,
        }
        for key in ("custom_id", "invoice_id"):
            if capture.get(key):
                result[key] = capture[key]
        if full:
            result["supplementary_data"] = {
                "related_ids": {
                    "order_id": capture["order_id"],
                    "authorization_id": capture["authorization_id"],
                }
            }
        return result

    def _get_capture(self, capture_id: str) -> dict[str, Any]:
        capture = self.captures.get(capture_id)
        if capture is None:
            raise self._fail(404, "INVALID_RESOURCE_ID")
        return capture

    def op_capture_get(self, ctx: _Ctx) -> Reply:
        return Reply(200, self._capture(self._get_capture(ctx.params["id"]), full=True))

    def op_refund(self, ctx: _Ctx) -> Reply:
        capture = self._get_capture(ctx.params["id"])
        remaining = capture["amount"] - capture["refunded"]
        if remaining <= 0:
            raise self._fail(422, "CAPTURE_FULLY_REFUNDED")
        body = ctx.json
        if body.get("amount"):
            amount, currency = self._minor(body["amount"])
            if currency != capture["currency"]:
                raise self._fail(422, "REFUND_CAPTURE_CURRENCY_MISMATCH")
        else:
            amount = remaining
        if amount <= 0:
            raise self._fail(422, "CANNOT_BE_ZERO_OR_NEGATIVE")
        if amount > remaining:
            raise self._fail(422, "REFUND_AMOUNT_EXCEEDED")
        now = self.now()
        refund_id = _id()
        self.refunds[refund_id] = {
            "id": refund_id,
            "capture_id": capture["id"],
            "order_id": capture["order_id"],
            "status": "COMPLETED",
            "amount": amount,
            "currency": capture["currency"],
            "custom_id": capture.get("custom_id"),
            "invoice_id": capture.get("invoice_id"),
            "create_time": now,
            "update_time": now,
        }
        capture["refunded"] += amount
        capture["refund_ids"].append(refund_id)
        # PayPal keeps its fee on a refund: the line gives none back.
        self._transaction(
            "T1107", refund_id, -amount, 0, capture["currency"], now, reference=capture["id"]
        )
        capture["status"] = (
            "REFUNDED" if capture["refunded"] == capture["amount"] else "PARTIALLY_REFUNDED"
        )
        capture["update_time"] = now
        return Reply(201, self._refund(self.refunds[refund_id]))

    def _refund(self, refund: dict[str, Any], *, in_order: bool = False) -> dict[str, Any]:
        capture = self.captures[refund["capture_id"]]
        result: dict[str, Any] = {
            "id": refund["id"],
            "status": refund["status"],
            "amount": self._money(refund["amount"], refund["currency"]),
            "create_time": _stamp(refund["create_time"]),
            "update_time": _stamp(refund["update_time"]),
            "links": [
                self._link(f"/v2/payments/refunds/{refund['id']}", "self"),
                self._link(f"/v2/payments/captures/{refund['capture_id']}", "up"),
            ],
        }
        for key in ("custom_id", "invoice_id"):
            if refund.get(key):
                result[key] = refund[key]
        if not in_order:
            result["seller_payable_breakdown"] = {
                "gross_amount": self._money(refund["amount"], refund["currency"]),
                "paypal_fee": self._money(0, refund["currency"]),
                "net_amount": self._money(refund["amount"], refund["currency"]),
                "total_refunded_amount": self._money(capture["refunded"], capture["currency"]),
            }
        return result

    def op_refund_get(self, ctx: _Ctx) -> Reply:
        refund = self.refunds.get(ctx.params["id"])
        if refund is None:
            raise self._fail(404, "INVALID_RESOURCE_ID")
        return Reply(200, self._refund(refund))

    # ------------------------------------------------------------------- payouts

    def op_payout_create(self, ctx: _Ctx) -> Reply:
        body = ctx.json
        header = body["sender_batch_header"]
        sender_batch_id = header.get("sender_batch_id")
        if sender_batch_id and sender_batch_id in self.sender_batch_ids:
            existing = self.sender_batch_ids[sender_batch_id]
            if self.duplicate_batch_link != "links":
                # Shapes PayPal has answered outside its spec: the link inside the detail,
                # or no link at all ("Duplicate batch request").
                reply = self._error(
                    400,
                    "Duplicate batch request",
                    name="USER_BUSINESS_ERROR",
                    message="User business error.",
                    field_name="SENDER_BATCH_ID",
                )
                if self.duplicate_batch_link == "details" and reply.body is not None:
                    reply.body["details"][0]["link"] = [
                        self._link(f"/v1/payments/payouts/{existing}", "self")
                    ]
                raise PayPalError(reply)
            raise self._fail(
                400,
                "SENDER_BATCH_ID_ALREADY_EXISTS",
                name="USER_BUSINESS_ERROR",
                message="User business error.",
                description=f"Batch with given sender_batch_id {sender_batch_id} already exists",
                field_name="SENDER_BATCH_ID",
                links=[self._link(f"/v1/payments/payouts/{existing}", "self")],
            )
        items = body["items"]
        if not items or len(items) > 15000:
            raise self._fail(
                400,
                "INVALID_ARRAY_LENGTH",
                name="VALIDATION_ERROR",
                message="Invalid request - see details.",
            )
        seen: set[str] = set()
        parsed = []
        for item in items:
            sender_item_id = item.get("sender_item_id")
            if sender_item_id in seen:
                raise self._fail(
                    400,
                    "DUPLICATE_ITEM",
                    name="VALIDATION_ERROR",
                    message="Invalid request - see details.",
                )
            seen.add(sender_item_id)
            amount, currency = self._minor(item["amount"], "currency")
            if amount <= 0:
                raise self._fail(
                    422,
                    "CANNOT_BE_ZERO_OR_NEGATIVE",
                    name="VALIDATION_ERROR",
                    message="Invalid request - see details.",
                )
            parsed.append((item, amount, currency))
        batch_id = _id(13)
        now = self.now()
        item_ids = []
        for item, amount, currency in parsed:
            item_id = _id(13)
            item_ids.append(item_id)
            self.items[item_id] = {
                "payout_item_id": item_id,
                "payout_batch_id": batch_id,
                "sender_batch_id": sender_batch_id,
                "transaction_status": "PENDING",
                "amount": amount,
                "currency": currency,
                "payout_item": {
                    key: item[key]
                    for key in ("recipient_type", "receiver", "note", "sender_item_id")
                    if key in item
                },
                "errors": None,
                "time_processed": None,
                "transaction_id": None,
            }
        self.batches[batch_id] = {
            "payout_batch_id": batch_id,
            "batch_status": "PENDING",
            "sender_batch_header": header,
            "item_ids": item_ids,
            "time_created": now,
            "time_completed": None,
        }
        if sender_batch_id:
            self.sender_batch_ids[sender_batch_id] = batch_id
        return Reply(
            201,
            {
                "batch_header": {
                    "payout_batch_id": batch_id,
                    "batch_status": "PENDING",
                    "sender_batch_header": header,
                },
                "links": [self._link(f"/v1/payments/payouts/{batch_id}", "self")],
            },
        )

    def _payout_item(self, item: dict[str, Any], *, with_sender_batch: bool) -> dict[str, Any]:
        detail = {
            **item["payout_item"],
            "amount": self._money(item["amount"], item["currency"], "currency"),
        }
        result: dict[str, Any] = {
            "payout_item_id": item["payout_item_id"],
            "transaction_status": item["transaction_status"],
            "payout_batch_id": item["payout_batch_id"],
            "payout_item": detail,
            "payout_item_fee": self._money(0, item["currency"], "currency"),
            "links": [self._link(f"/v1/payments/payouts-item/{item['payout_item_id']}", "item")],
        }
        if with_sender_batch and item["sender_batch_id"]:
            result["sender_batch_id"] = item["sender_batch_id"]
        if item["transaction_id"]:
            result["transaction_id"] = item["transaction_id"]
        if item["time_processed"] is not None:
            result["time_processed"] = _stamp(item["time_processed"])
        if item["errors"]:
            result["errors"] = item["errors"]
        return result

    def op_payout_get(self, ctx: _Ctx) -> Reply:
        batch = self.batches.get(ctx.params["id"])
        if batch is None:
            raise self._fail(
                404, name="INVALID_RESOURCE_ID", message="Requested resource ID was not found."
            )
        page = int(ctx.query.get("page", "1") or 1)
        page_size = int(ctx.query.get("page_size", "1000") or 1000)
        item_ids = batch["item_ids"]
        chosen = item_ids[(page - 1) * page_size : page * page_size]
        header: dict[str, Any] = {
            "payout_batch_id": batch["payout_batch_id"],
            "batch_status": batch["batch_status"],
            "time_created": _stamp(batch["time_created"]),
            "sender_batch_header": batch["sender_batch_header"],
        }
        if batch["time_completed"] is not None:
            header["time_completed"] = _stamp(batch["time_completed"])
        currencies = {self.items[i]["currency"] for i in item_ids}
        if len(currencies) == 1:
            currency = currencies.pop()
            header["amount"] = self._money(
                sum(self.items[i]["amount"] for i in item_ids), currency, "currency"
            )
            header["fees"] = self._money(0, currency, "currency")
        result: dict[str, Any] = {
            "batch_header": header,
            "items": [self._payout_item(self.items[i], with_sender_batch=False) for i in chosen],
            "links": [self._link(f"/v1/payments/payouts/{batch['payout_batch_id']}", "self")],
        }
        if ctx.query.get("total_required") == "true":
            result["total_items"] = len(item_ids)
            result["total_pages"] = max(1, -(-len(item_ids) // page_size))
        return Reply(200, result)

    def op_item_get(self, ctx: _Ctx) -> Reply:
        item = self.items.get(ctx.params["id"])
        if item is None:
            raise self._fail(
                404, name="INVALID_RESOURCE_ID", message="Requested resource ID was not found."
            )
        return Reply(200, self._payout_item(item, with_sender_batch=True))

    # ------------------------------------------------------------------- disputes

    def add_dispute(self, resource: Mapping[str, Any]) -> None:
        """A dispute PayPal now asks the seller to answer (its status set so)."""
        with self.lock:
            dispute = {**resource, "status": "WAITING_FOR_SELLER_RESPONSE", "evidences": []}
            self.disputes[str(resource["dispute_id"])] = dispute

    def _form_parts(self, ctx: _Ctx) -> dict[str, tuple[str, bytes]]:
        """A multipart/form-data body's parts: name -> (content type, content)."""
        content_type = ctx.headers.get("content-type") or ""
        if not content_type.startswith("multipart/form-data"):
            raise self._fail(400, "INVALID_CONTENT_TYPE", description="multipart/form-data")
        message = BytesParser(policy=email_policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + ctx.raw
        )
        parts: dict[str, tuple[str, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                parts[name] = (part.get_content_type(), payload)
        return parts

    def op_provide_evidence(self, ctx: _Ctx) -> Reply:
        """The `input` part holds {"evidences": [...]}, each an `evidence` of the spec (which
        types the multipart body with its `evidence-file` part only)."""
        dispute = self.disputes.get(ctx.params["id"])
        if dispute is None:
            raise self._fail(404, "INVALID_RESOURCE_ID")
        parts = self._form_parts(ctx)
        if "input" not in parts:
            raise self._fail(400, "MISSING_REQUIRED_PARAMETER", field_name="input")
        try:
            evidences = json.loads(parts["input"][1])["evidences"]
        except (ValueError, KeyError, TypeError):
            raise self._fail(400, "INVALID_PARAMETER_SYNTAX", field_name="input") from None
        if not isinstance(evidences, list) or not evidences:
            raise self._fail(400, "MISSING_REQUIRED_PARAMETER", field_name="evidences")
        if self.validator is not None:
            for evidence in evidences:
                with self.lock:
                    self.violations += self.validator.validate_schema(
                        "disputes", "evidence", evidence, sent=True
                    )
        if dispute["status"] != "WAITING_FOR_SELLER_RESPONSE":
            raise self._fail(422, "CANNOT_PROVIDE_EVIDENCE", description=dispute["status"])
        dispute["evidences"] = evidences
        dispute["status"] = "UNDER_REVIEW"
        path = f"/v1/customer/disputes/{ctx.params['id']}"
        return Reply(200, {"links": [self._link(path, "self")]})

    # ------------------------------------------------------------------- webhooks

    def op_verify(self, ctx: _Ctx) -> Reply:
        body = ctx.json
        missing = [
            k
            for k in (
                "auth_algo",
                "cert_url",
                "transmission_id",
                "transmission_sig",
                "transmission_time",
                "webhook_id",
                "webhook_event",
            )
            if not body.get(k)
        ]
        if missing:
            raise self._fail(
                400,
                "MISSING_REQUIRED_PARAMETER",
                name="VALIDATION_ERROR",
                message="Invalid data provided",
                field_name=missing[0],
            )
        sent = self.transmissions.get(body["transmission_id"])
        ok = (
            sent is not None
            and body["webhook_id"] == self.webhook_id
            and body["transmission_sig"] == sent["signature"]
            and body["cert_url"] == CERT_URL
            and body["auth_algo"] == "SHA256withRSA"
            and body["webhook_event"] == json.loads(sent["body"])
        )
        if ok:
            # PayPal checks the signature over the event it sent; so does the double.
            key, _ = signing_key_and_cert()
            message = (
                f"{body['transmission_id']}|{body['transmission_time']}|{self.webhook_id}|"
                f"{zlib.crc32(sent['body']) & 0xFFFFFFFF}"
            ).encode()
            try:
                key.public_key().verify(
                    base64.b64decode(body["transmission_sig"]),
                    message,
                    padding.PKCS1v15(),
                    hashes.SHA256(),
                )
            except Exception:
                ok = False
        return Reply(200, {"verification_status": "SUCCESS" if ok else "FAILURE"})


_OPERATIONS: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile("^" + re.sub(r"\{id\}", "[^/]+", path) + "$"), operation)
    for method, path, operation, _ in PayPalDouble(None)._routes()
]


def operation_for(method: str, path: str) -> str:
    """The double's name for a PayPal operation ("orders.create", ...)."""
    for route_method, pattern, operation in _OPERATIONS:
        if route_method == method.upper() and pattern.match(path):
            return operation
    return f"{method.upper()} {path}"


class ValidatingTransport(httpx.AsyncBaseTransport):
    """Wraps a real transport and validates every exchange against the specs: how the run
    against PayPal's sandbox checks real traffic, not only the double's."""

    def __init__(self, validator: SpecValidator, inner: httpx.AsyncBaseTransport | None = None):
        self.validator = validator
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.violations: list[str] = []
        self.exchanges = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        self.exchanges += 1
        self.violations += self.validator.validate(
            operation_for(request.method, request.url.path),
            request.method,
            request.url.path,
            list(request.url.params.multi_items()),
            {k.lower(): v for k, v in request.headers.items()},
            body,
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            content,
        )
        # The body is already decoded: drop the headers that describe its wire form.
        headers = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            response.status_code, headers=headers, content=content, request=request
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def iter_paypal_double(validator: SpecValidator | None, **kwargs: Any) -> Iterator[PayPalDouble]:
    """For fixtures: a started double, stopped afterwards, failing the test if any request
    or response broke PayPal's specs."""
    with PayPalDouble(validator, **kwargs) as double:
        yield double
    assert double.violations == [], "PayPal spec violations:\n" + "\n".join(double.violations)
