"""The business figures of GET /metrics, read from the database at scrape time: every
API and worker process writes there, so any one of them answers for all of them (no
per-process counters to add up, nothing lost when a process restarts).

Each figure is one aggregate query; the histograms count durations into buckets in SQL.
Payments and disputes are scanned whole (about 0.3 s at a million payments: fine at the
usual 15-60 s scrape interval); the rest reads small tables or balance rows."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.kit.money import format_amount
from handwork_payments.risk.rules import BLOCKING_RULES

HOLD_BUCKETS = (1, 5, 15, 60, 300, 1800, 3600, 6 * 3600, 86400)
DAY = 86400
RESOLUTION_BUCKETS = (3600, 6 * 3600, DAY, 3 * DAY, 7 * DAY, 14 * DAY, 30 * DAY)
PAYOUT_BUCKETS = (60, 600, 3600, 6 * 3600, DAY, 3 * DAY, 7 * DAY)

# A payment counts under every status it has reached: each count only grows (a counter).
_PAYMENTS = text(
    """
    SELECT payment_method, count(*), count(held_at), count(*) FILTER (WHERE status = 'failed'),
           count(released_at), count(refunded_at)
    FROM payments GROUP BY payment_method
    """
)
_DISPUTED = text(
    """
    SELECT p.payment_method, count(DISTINCT d.payment_id)
    FROM payment_disputes d JOIN payments p ON p.id = d.payment_id GROUP BY 1
    """
)
PAYMENT_STATUSES = ("created", "held", "failed", "released", "refunded", "disputed")
# Risk decisions on payments (risk/): what each payment's verdict was, and the payments
# blocked (they left no payment row, only their audit entry). Observed, a payment a
# blocking rule fired on counts as the block it would have been.
_RISK = text(
    """
    SELECT CASE WHEN risk_level = 'normal' THEN 'allow'
                WHEN EXISTS (SELECT 1 FROM jsonb_array_elements_text(risk_reasons) r
                             WHERE split_part(r, ':', 1) = ANY(:blocking)) THEN 'block'
                ELSE 'review' END,
           CASE WHEN risk_enforced THEN 'enforce' ELSE 'observe' END, count(*)
    FROM payments WHERE risk_level IS NOT NULL GROUP BY 1, 2
    UNION ALL
    SELECT 'block', 'enforce', count(*) FROM audit_log WHERE action = 'payment.risk_blocked'
    """
)


def _histogram_sql(buckets: Sequence[int], seconds: str, source: str, label: str) -> str:
    """Per value of `label` and bucket (0 = at most the first bound ... len(buckets) =
    above the last): how many and their sum. One width_bucket per row rather than a
    filter per bucket, on negated values so that a bound belongs to its own bucket (`le`)."""
    bounds = ", ".join(str(-float(b)) for b in reversed(buckets))
    return (
        f"SELECT label, {len(buckets)} - width_bucket(-s, ARRAY[{bounds}]::float8[]), "
        f"count(*), sum(s) FROM (SELECT {label} AS label, "
        f"extract(epoch FROM {seconds})::float8 AS s FROM {source}) t GROUP BY 1, 2"
    )


_HOLD = text(
    _histogram_sql(
        HOLD_BUCKETS, "held_at - created_at", "payments WHERE held_at IS NOT NULL", "payment_method"
    )
)
_RESOLUTION = text(
    _histogram_sql(
        RESOLUTION_BUCKETS,
        "resolved_at - created_at",
        "payment_disputes WHERE resolved_at IS NOT NULL",
        "''",
    )
)
_PAYOUTS = text(
    _histogram_sql(
        PAYOUT_BUCKETS,
        "completed_at - requested_at",
        "worker_payouts WHERE completed_at IS NOT NULL AND status = 'completed'",
        "payment_method",
    )
)
# Gross fee revenue, what the providers kept, what the platform lost, per currency (costs
# carry negative balances in the ledger, shown here as positive amounts).
_REVENUE = text(
    """
    SELECT currency,
           coalesce(sum(balance) FILTER (WHERE kind = 'platform_fee_revenue'), 0),
           -coalesce(sum(balance) FILTER (WHERE kind = 'provider_fees'), 0),
           -coalesce(sum(balance) FILTER (WHERE kind = 'platform_losses'), 0)
    FROM ledger_accounts
    WHERE kind IN ('platform_fee_revenue', 'provider_fees', 'platform_losses')
    GROUP BY currency
    """
)
_WEBHOOKS = text(
    """
    SELECT provider, count(*), count(processed_at), count(*) FILTER (WHERE status = 'dead')
    FROM webhook_deliveries GROUP BY provider
    """
)
_JOBS = text(
    "SELECT split_part(task_name, ':', 2), status::text, count(*) FROM procrastinate_jobs "
    "GROUP BY 1, 2"
)
_QUEUE = text(
    """
    SELECT queue_name, count(*) FROM procrastinate_jobs
    WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())
    GROUP BY queue_name
    """
)
_ALERTS = text("SELECT kind, count(*) FROM alerts WHERE status = 'open' GROUP BY kind")


def _histogram(
    name: str, doc: str, label: str, rows: Iterable[Sequence[Any]], buckets: Sequence[int]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label] if label else [])
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * (len(buckets) + 1))
    sums: dict[str, float] = defaultdict(float)
    for value, bucket, count, seconds in rows:
        counts[value][bucket] += int(count)
        sums[value] += float(seconds)
    for value, per_bucket in counts.items():
        cumulative = list(itertools.accumulate(per_bucket))
        family.add_metric(
            [value] if label else [],
            [(str(b), c) for b, c in zip(buckets, cumulative, strict=False)]
            + [("+Inf", cumulative[-1])],
            sums[value],
        )
    return family


def _revenue_families(rows: Sequence[Any]) -> list[Metric]:
    """Gross fee revenue, provider fees, losses and net revenue (gross - fees - losses),
    per currency, in the currency's major unit: net beside gross, as the books say."""
    names = {
        "handwork_platform_fee_revenue": "Platform fee revenue in the ledger (fees released "
        "minus fee parts refunded)",
        "handwork_provider_fees": "What the providers kept of captures (net of fees they "
        "gave back)",
        "handwork_platform_losses": "What the platform lost (dispute fees, chargebacks it "
        "could not recover, write-offs)",
        "handwork_platform_net_revenue": "Fee revenue minus provider fees minus losses",
    }
    families = {
        name: GaugeMetricFamily(name, f"{doc}, in the currency's major unit", labels=["currency"])
        for name, doc in names.items()
    }
    for currency, gross, fees, losses in rows:
        figures = (gross, fees, losses, gross - fees - losses)
        for family, minor in zip(families.values(), figures, strict=True):
            family.add_metric([currency], float(Decimal(format_amount(int(minor), currency))))
    return list(families.values())


async def families(session: AsyncSession) -> list[Metric]:
    """Every business figure, as Prometheus metric families."""
    rows = (await session.execute(_PAYMENTS)).all()
    payments = CounterMetricFamily(
        "handwork_payments",
        "Payments that reached each status (created counts every attempt)",
        labels=["provider", "status"],
    )
    disputed = {method: int(n) for method, n in (await session.execute(_DISPUTED)).all()}
    for method, *counts in rows:
        counts.append(disputed.get(method, 0))
        for status, count in zip(PAYMENT_STATUSES, counts, strict=True):
            payments.add_metric([method, status], int(count))
    revenue = _revenue_families((await session.execute(_REVENUE)).all())
    webhooks = CounterMetricFamily(
        "handwork_webhook_deliveries",
        "Provider webhook deliveries received, processed and dead-lettered (dead ones can "
        "be replayed)",
        labels=["provider", "status"],
    )
    for provider, received, processed, dead in (await session.execute(_WEBHOOKS)).all():
        for status, count in (("received", received), ("processed", processed), ("dead", dead)):
            webhooks.add_metric([provider, status], int(count))
    jobs = GaugeMetricFamily(
        "handwork_jobs_total",
        "Background jobs by task and status (finished ones are kept 7 days)",
        labels=["task", "status"],
    )
    for task, status, count in (await session.execute(_JOBS)).all():
        jobs.add_metric([task, status], int(count))
    queue = GaugeMetricFamily(
        "handwork_job_queue_depth", "Jobs due and waiting for a worker", labels=["queue"]
    )
    for name, count in (await session.execute(_QUEUE)).all():
        queue.add_metric([name], int(count))
    alerts = GaugeMetricFamily("handwork_open_alerts", "Open alerts", labels=["kind"])
    for kind, count in (await session.execute(_ALERTS)).all():
        alerts.add_metric([kind], int(count))
    risk = CounterMetricFamily(
        "handwork_risk_decisions",
        "Risk decisions on payments by outcome, enforced or only observed (RISK_MODE)",
        labels=["outcome", "mode"],
    )
    blocking = list(BLOCKING_RULES)
    for outcome, mode, count in (await session.execute(_RISK, {"blocking": blocking})).all():
        risk.add_metric([outcome, mode], int(count))
    return [
        payments,
        _histogram(
            "handwork_payment_hold_seconds",
            "From a payment's creation to its money held in escrow",
            "provider",
            (await session.execute(_HOLD)).all(),
            HOLD_BUCKETS,
        ),
        *revenue,
        _histogram(
            "handwork_dispute_resolution_seconds",
            "From a dispute's opening to its resolution",
            "",
            (await session.execute(_RESOLUTION)).all(),
            RESOLUTION_BUCKETS,
        ),
        _histogram(
            "handwork_payout_processing_seconds",
            "From a payout's request to its completion",
            "provider",
            (await session.execute(_PAYOUTS)).all(),
            PAYOUT_BUCKETS,
        ),
        webhooks,
        jobs,
        queue,
        alerts,
        risk,
    ]
