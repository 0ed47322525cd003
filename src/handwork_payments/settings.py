"""Configuration from the environment (names as in SPEC.md)."""

from __future__ import annotations

import base64
import os
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from handwork_payments.kit import fee_rules


def _is_fernet_key(key: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(key.encode("ascii"))) == 32
    except (ValueError, UnicodeEncodeError):
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Deployment: production refuses simulators and generated secrets (startup.py).
    handwork_env: Literal["development", "production"] = "development"
    # Simulate a provider without credentials even while the other one is live (tests and
    # demos only: simulated payments could be paid out for real through the live one).
    allow_simulated_providers: bool = False
    # /docs and /openapi.json; unset: served in development, not in production.
    docs_enabled: bool | None = None
    # Every request body, webhooks included, is refused (413) beyond this size.
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)

    # Database: DATABASE_URL, or an embedded PostgreSQL kept in EMBEDDED_PG_DIR.
    database_url: str | None = None
    embedded_pg_dir: str = ".data/postgres"
    db_pool_size: int = 20

    # Money
    platform_fee_percentage: Decimal = Field(default=Decimal("5.0"), ge=0, le=100)

    # Escrow timing
    auto_release_hours: Decimal = Field(default=Decimal("72"), ge=0)
    # How long before an authorisation lapses the hold guard captures it.
    capture_margin_hours: int = Field(default=12, ge=1)

    # Auth
    jwt_secret: str | None = None
    jwt_expire_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)
    # argon2id cost (OWASP's minimum is t=2, m=19 MiB; the library default is t=3, m=64 MiB)
    password_hash_time_cost: int = Field(default=3, ge=1, le=10)
    password_hash_memory_kib: int = Field(default=65536, ge=8, le=1048576)
    first_admin_email: str | None = None
    first_admin_password: str | None = None

    # Encryption at rest for payment_metadata: comma-separated Fernet keys, newest first.
    metadata_encryption_keys: str | None = None

    # Stripe
    stripe_secret_key: str | None = None
    stripe_publishable_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    stripe_webhook_tolerance_seconds: int = 300
    # The signing secret of a second endpoint "listening to events on connected accounts"
    # (Connect), which is how account.updated of workers' accounts arrives.
    stripe_connect_webhook_secret: str | None = None
    # Stripe Connect onboarding (POST /payments/stripe/connect/onboarding): the marketplace
    # front end's pages Stripe sends the worker to when they finish (return) or when the
    # Account Link expired or was used already (refresh: ask this API for a new link).
    # Stripe requires https in live mode.
    stripe_connect_refresh_url: str = "http://localhost:3000/payouts/stripe/refresh"
    stripe_connect_return_url: str = "http://localhost:3000/payouts/stripe/return"

    # PayPal
    paypal_client_id: str | None = None
    paypal_client_secret: str | None = None
    paypal_mode: Literal["sandbox", "live"] = "sandbox"
    paypal_api_base: str | None = None
    paypal_webhook_id: str | None = None
    paypal_webhook_verification: Literal["api", "offline"] = "api"
    # How far PAYPAL-TRANSMISSION-TIME may be from now: an old delivery's headers cannot be
    # replayed with another body after it.
    paypal_webhook_tolerance_seconds: int = Field(default=300, gt=0)

    # Provider calls
    provider_timeout_seconds: float = Field(default=20.0, gt=0, le=120)

    # Background work
    payout_batch_size: int = Field(default=50, ge=1, le=1000)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    # A failed webhook is tried again after base * 2**(attempts - 1) seconds, at most max.
    webhook_retry_base_seconds: float = Field(default=30.0, gt=0, le=3600)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0, le=86400)
    # A provider call marked in flight (a payment's provider_operation, a payout's last
    # attempt) for longer than this is resumed by the resolver with the same idempotency
    # key. Well above provider_timeout_seconds, so a call still running is left alone.
    provider_operation_stale_seconds: int = Field(default=300, ge=10, le=86400)

    # Worker processes (procrastinate)
    worker_poll_seconds: float = Field(default=5.0, gt=0, le=60)
    worker_heartbeat_seconds: float = Field(default=10.0, gt=0, le=300)
    # A worker whose heartbeat is older than this is dead: its running jobs are retried.
    worker_stalled_seconds: float = Field(default=30.0, gt=0, le=3600)
    # How often a worker looks for jobs of dead workers (a periodic job).
    worker_stalled_sweep_seconds: int = Field(default=60, ge=1, le=3600)
    # On SIGTERM running jobs get this long to finish; then they are aborted and retried.
    # Below the usual orchestrator kill delay (30 s), above a provider call's timeout.
    worker_shutdown_grace_seconds: float = Field(default=25.0, ge=0, le=3600)

    # Logs: "text" for people, "json" (one object per line, extra fields kept) for machines.
    log_format: Literal["text", "json"] = "text"

    # Compliance (issue 10): retention and erasure.
    # Processed webhook bodies older than this are reduced to their digest and event id.
    webhook_retention_days: int = Field(default=90, ge=1, le=3650)
    # How long financial records (payments, ledger, payouts, audit) are kept: the legal
    # retention period. Nothing deletes them; erasure pseudonymises the person instead.
    financial_retention_years: int = Field(default=10, ge=1, le=100)
    # Keys the hashes that replace an erased person's identifiers; derived from
    # JWT_SECRET when unset (set it to keep pseudonyms stable across a JWT_SECRET change).
    pseudonym_key: str | None = None
    # --- Events to the marketplace (events/): the outbox's deliveries -----------------
    # Where every event is POSTed, signed with the secret; unset: events are kept (and
    # listed at /admin/events) but not sent.
    marketplace_webhook_url: str | None = None
    marketplace_webhook_secret: str | None = None
    marketplace_webhook_retry_base_seconds: float = Field(default=30.0, gt=0, le=86400)
    marketplace_webhook_retry_max_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)
    marketplace_webhook_max_attempts: int = Field(default=10, ge=1, le=100)
    marketplace_webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # --- provider fees (issue 15): what the simulators charge, per currency -----------
    # "CUR:percent:fixed" rules, comma-separated; the fixed part in the currency's minor
    # units; "*" for any other currency. Stripe's standard card pricing (US 2.9% + 30c,
    # Japan 3.6%) and PayPal's standard commercial rate (US 3.49% + 49c, JPY 49 yen);
    # KWD, which neither lists, at the US rate with the fixed part's local equivalent.
    simulator_stripe_fees: str = "USD:2.9:30,JPY:3.6:0,KWD:2.9:90,*:2.9:30"
    simulator_paypal_fees: str = "USD:3.49:49,JPY:3.49:49,KWD:3.49:150,*:3.49:49"
    # Stripe's dispute fee ($15.00 or local equivalent), "CUR:fixed"; returned when won.
    simulator_stripe_dispute_fees: str = "USD:1500,JPY:2000,KWD:4600,*:1500"
    # Operations (issue 12): metrics, alerts that reach a person, log verbosity.
    # GET /metrics asks for `Authorization: Bearer <METRICS_TOKEN>` when set.
    metrics_token: str | None = None
    # Where each new alert is sent (a job, retried): a Slack-compatible incoming webhook
    # ({"text": ...}) and/or email through SMTP_URL (smtp://user:pass@host:port; smtps://
    # for TLS from the start; STARTTLS is used whenever the server offers it).
    alert_webhook_url: str | None = None
    smtp_url: str | None = None
    alert_email_from: str = "handwork-payments@localhost"
    alert_email_to: str | None = None  # comma-separated
    # "warning": start-up banner, then warnings only; "info": every job and request.
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    # --- provider edge cases (issue 15) ---------------------------------------------------
    # Starts every id sent to a provider; unset: the one generated at the first start and
    # kept in the database (table `installation`). Two installations sharing a provider
    # account must differ, or one is answered with the other's objects.
    provider_id_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{1,24}$")
    # PayPal "duplicate batch" answers without a link looked up this many times before the
    # batch becomes an admin's decision (failed with a reason, and an alert).
    paypal_duplicate_batch_max_tries: int = Field(default=3, ge=1, le=20)

    @field_validator("platform_fee_percentage")
    @classmethod
    def _fee_precision(cls, value: Decimal) -> Decimal:
        if value.as_tuple().exponent < -4:  # type: ignore[operator]
            raise ValueError("PLATFORM_FEE_PERCENTAGE takes at most 4 decimal places")
        return value

    @field_validator(
        "simulator_stripe_fees", "simulator_paypal_fees", "simulator_stripe_dispute_fees"
    )
    @classmethod
    def _fee_rules(cls, value: str) -> str:
        fee_rules.parse(value)
        return value

    @field_validator("metadata_encryption_keys")
    @classmethod
    def _fernet_keys(cls, value: str | None) -> str | None:
        # Checked here, so that a mistyped key stops start-up with one line naming it
        # rather than a traceback from the first request that encrypts metadata.
        for number, key in enumerate((k.strip() for k in (value or "").split(",")), 1):
            if key and not _is_fernet_key(key):
                raise ValueError(
                    f"key {number} is not a Fernet key (32 bytes in url-safe base64, as "
                    "`handwork-payments crypto rotate` or Fernet.generate_key() prints)"
                )
        return value

    @field_validator("worker_stalled_sweep_seconds")
    @classmethod
    def _sweep_fits_cron(cls, value: int) -> int:
        # A cron step: seconds that divide a minute, or whole minutes that divide an hour.
        if (value < 60 and 60 % value) or (value >= 60 and (value % 60 or 3600 % value)):
            raise ValueError("WORKER_STALLED_SWEEP_SECONDS must divide 60, or 3600 in minutes")
        return value

    @model_validator(mode="after")
    def _stale_after_timeout(self) -> Settings:
        # The resolver repeats a call only once the first one cannot still be running.
        if self.provider_operation_stale_seconds < 2 * self.provider_timeout_seconds:
            raise ValueError(
                "PROVIDER_OPERATION_STALE_SECONDS must be at least twice PROVIDER_TIMEOUT_SECONDS"
            )
        return self

    @property
    def production(self) -> bool:
        return self.handwork_env == "production"

    @property
    def serve_docs(self) -> bool:
        return self.docs_enabled if self.docs_enabled is not None else not self.production

    @property
    def stripe_live(self) -> bool:
        return bool(self.stripe_secret_key)

    @property
    def paypal_live(self) -> bool:
        return bool(self.paypal_client_id and self.paypal_client_secret)

    # Logins and registrations (issue 9, High 1): argon2 runs in a pool of this many
    # threads (default: one per CPU), at a lower scheduling priority, so hashing never
    # stalls the event loop, and a burst of logins queues rather than taking all memory
    # (each hash takes PASSWORD_HASH_MEMORY_KIB).
    password_hash_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    # Failed logins per account (email) in a fixed window before it answers 429.
    login_max_failures_per_account: int = Field(default=5, ge=1, le=10_000)
    login_failure_window_seconds: int = Field(default=900, ge=1, le=86_400)
    # Login attempts per client IP per minute, and registrations per client IP per hour.
    login_max_attempts_per_ip_per_minute: int = Field(default=30, ge=1, le=1_000_000)
    registrations_per_ip_per_hour: int = Field(default=10, ge=1, le=1_000_000)

    # Idempotency-Key records (issue 9, High 2): kept this long, then purged.
    idempotency_ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    # A first request still marked in flight after this long died (a crash, a lost
    # connection): a retry with its key takes it over instead of a 409. Above the longest
    # request (a few provider calls of PROVIDER_TIMEOUT_SECONDS each).
    idempotency_in_flight_timeout_seconds: int = Field(default=120, ge=10, le=86_400)

    # Performance (issue 11). One log line per request costs more than a cheap request
    # itself: off unless asked for.
    access_log: bool = False
    # The simulators answer each call this much later (a slow provider, for the bench);
    # 0 in every real use.
    simulator_latency_ms: int = Field(default=0, ge=0, le=60_000)

    # Payout controls (issue 14). A payment's share becomes withdrawable this long after
    # its release (`available_soon` until then), so a refund or chargeback in that time is
    # taken from money still on the platform. 0: at once, as before; 48 to 168 in production.
    payout_delay_hours: int = Field(default=0, ge=0, le=24 * 90)

    # Wallets and stablecoin payments (issue 14). `payment_method: "crypto"` (Stripe's
    # stablecoin payments, USDC settling in USD) only where the platform's Stripe account
    # has the Crypto payment method: off unless set.
    stripe_crypto_enabled: bool = False

    # Recurring bookings (issue 13). A declined off-session charge is tried again this
    # many days after its first failure (comma-separated, increasing); after the last
    # the schedule is paused.
    recurring_retry_days: str = "1,3,5"

    @field_validator("recurring_retry_days")
    @classmethod
    def _retry_days(cls, value: str) -> str:
        try:
            days = [int(part) for part in value.split(",") if part.strip()]
        except ValueError as exc:
            raise ValueError("RECURRING_RETRY_DAYS is whole days, e.g. 1,3,5") from exc
        if len(days) > 10 or any(d < 1 or d > 60 for d in days) or days != sorted(set(days)):
            raise ValueError("RECURRING_RETRY_DAYS: at most 10 increasing days of 1-60")
        return ",".join(str(d) for d in days)

    @property
    def recurring_retry_schedule(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.recurring_retry_days.split(",") if d)

    # Risk rules (issue 14): enforce | observe | off; unset = enforce in production,
    # observe elsewhere (rules run and record, nothing is held back). See README "Risk rules".
    risk_mode: Literal["enforce", "observe", "off"] | None = None
    # Payments by one client: more than this many within an hour are blocked, within a day
    # go to review.
    risk_client_payments_per_hour: int = Field(default=10, ge=1, le=100_000)
    risk_client_payments_per_day: int = Field(default=30, ge=1, le=1_000_000)
    # An account younger than this is new: a new client paying a new worker goes to review.
    risk_new_account_hours: int = Field(default=24, ge=0, le=24 * 365)
    # A payment over this many times the client's largest earlier one (same currency) goes
    # to review; 0 turns the rule off.
    risk_amount_history_multiplier: int = Field(default=5, ge=0, le=1_000)
    # Failed payments by one client within a day from which its next payment goes to review.
    risk_declines_per_day: int = Field(default=3, ge=1, le=1_000)
    # Payout controls: a payout within this many days of the worker's registration goes to
    # review (and a worker's first payout always does); payouts per worker per day beyond
    # PAYOUT_MAX_PER_DAY go to review too.
    payout_hold_new_worker_days: int = Field(default=7, ge=0, le=365)
    payout_max_per_day: int = Field(default=3, ge=1, le=1_000)

    @property
    def risk_mode_effective(self) -> str:
        if self.risk_mode is not None:
            return self.risk_mode
        return "enforce" if self.production else "observe"

    # Recurring bookings through PayPal Vault (issue 13): where PayPal sends the payer
    # back after approving (or declining) saving PayPal for a schedule.
    paypal_vault_return_url: str = "http://localhost:3000/recurring/paypal/return"
    paypal_vault_cancel_url: str = "http://localhost:3000/recurring/paypal/cancel"


@lru_cache
def get_settings() -> Settings:
    return Settings()
