"""The ledger's invariants, checked over the whole database (`handwork-payments ledger
verify`, and after every test). Each check is one SQL query that returns the rows that
break it, so a clean ledger answers with an empty list whatever its size."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

CHECKS: dict[str, str] = {
    "1. each journal entry sums to zero per currency and has two postings or more": """
        SELECT 'entry ' || e.id || ' (' || e.key || ') ' || coalesce(p.currency, '-')
               || ' sums to ' || coalesce(sum(p.amount), 0) || ' over ' || count(p.id)
               || ' postings'
        FROM journal_entries e LEFT JOIN postings p ON p.entry_id = e.id
        GROUP BY e.id, e.key, p.currency
        HAVING coalesce(sum(p.amount), 0) <> 0 OR count(p.id) < 2
    """,
    "1b. each balance row equals the sum of its postings, in its own currency": """
        SELECT 'account ' || a.code || ' balance ' || a.balance || ' but postings sum to '
               || coalesce(sum(p.amount), 0)
        FROM ledger_accounts a LEFT JOIN postings p ON p.account_id = a.id
        GROUP BY a.id
        HAVING a.balance <> coalesce(sum(p.amount), 0)
            OR bool_or(p.currency IS NOT NULL AND p.currency <> a.currency)
    """,
    "2. a payment's escrow = amount - refunded - milestones released (0 once settled)": """
        SELECT 'payment ' || p.id || ' (' || p.status || ') escrow ' || coalesce(a.balance, 0)
               || ', expected ' || x.expected
        FROM payments p
        CROSS JOIN LATERAL (SELECT CASE WHEN p.status IN ('held', 'disputed')
                                        THEN p.amount - p.refunded_amount
                                             - p.released_amount
                                        ELSE 0 END
                            AS expected) x
        LEFT JOIN ledger_accounts a ON a.code = 'escrow:' || p.id || ':' || p.currency
        WHERE coalesce(a.balance, 0) <> x.expected
    """,
    "3. a worker's available = released shares (milestones too) - clawbacks - payouts not failed"
    " + what was reversed of them + debts written off": """
        WITH earned AS (
            SELECT worker_id, currency, sum(amount) AS amount FROM (
                SELECT b.worker_id, p.currency,
                       CASE WHEN p.released_at IS NOT NULL
                            THEN p.worker_amount - (p.refunded_amount - p.refunded_fee)
                            ELSE p.released_amount - p.released_fee END AS amount
                FROM payments p JOIN bookings b ON b.id = p.booking_id
                WHERE p.released_at IS NOT NULL OR p.released_amount > 0
                UNION ALL
                SELECT worker_id, currency, amount FROM worker_write_offs
            ) x GROUP BY 1, 2
        ), reversed AS (
            SELECT payout_id, sum(amount) AS amount
            FROM payout_reversals WHERE status = 'succeeded' GROUP BY 1
        ), paid AS (
            SELECT w.worker_id, w.currency, sum(w.amount - coalesce(r.amount, 0)) AS amount,
                   sum(w.amount) FILTER (WHERE w.status IN ('pending', 'processing'))
                   AS reserved
            FROM worker_payouts w LEFT JOIN reversed r ON r.payout_id = w.id
            WHERE w.status <> 'failed' GROUP BY 1, 2
        ), expected AS (
            SELECT coalesce(e.worker_id, d.worker_id) AS worker_id,
                   coalesce(e.currency, d.currency) AS currency,
                   coalesce(e.amount, 0) - coalesce(d.amount, 0) AS available,
                   coalesce(d.reserved, 0) AS reserved
            FROM earned e FULL JOIN paid d
              ON d.worker_id = e.worker_id AND d.currency = e.currency
        ), actual AS (
            SELECT owner_id AS worker_id, currency,
                   sum(balance) FILTER (WHERE kind = 'worker_available') AS available,
                   sum(balance) FILTER (WHERE kind = 'worker_payout_reserved') AS reserved
            FROM ledger_accounts
            WHERE kind IN ('worker_available', 'worker_payout_reserved')
            GROUP BY 1, 2
        )
        SELECT 'worker ' || coalesce(x.worker_id, y.worker_id) || ' '
               || coalesce(x.currency, y.currency) || ': available '
               || coalesce(y.available, 0) || ' expected ' || coalesce(x.available, 0)
               || ', reserved ' || coalesce(y.reserved, 0) || ' expected '
               || coalesce(x.reserved, 0)
        FROM expected x FULL JOIN actual y
          ON y.worker_id = x.worker_id AND y.currency = x.currency
        WHERE coalesce(x.available, 0) <> coalesce(y.available, 0)
           OR coalesce(x.reserved, 0) <> coalesce(y.reserved, 0)
    """,
    "4. payout requests never take an available balance below zero": """
        SELECT 'payout entry ' || r.key || ' left ' || r.account || ' at ' || r.running
        FROM (
            SELECT e.key, e.kind, a.code AS account,
                   sum(p.amount) OVER (PARTITION BY p.account_id ORDER BY p.id) AS running
            FROM postings p
            JOIN ledger_accounts a ON a.id = p.account_id
            JOIN journal_entries e ON e.id = p.entry_id
            WHERE a.kind = 'worker_available'
        ) r
        WHERE r.kind = 'payout_reserve' AND r.running < 0
    """,
    "5. fee revenue = fees of released payments and milestones - fee parts refunded": """
        WITH expected AS (
            SELECT currency,
                   sum(CASE WHEN released_at IS NOT NULL THEN platform_fee - refunded_fee
                            ELSE released_fee END) AS amount
            FROM payments WHERE released_at IS NOT NULL OR released_amount > 0 GROUP BY 1
        ), actual AS (
            SELECT currency, balance AS amount FROM ledger_accounts
            WHERE kind = 'platform_fee_revenue'
        )
        SELECT 'fee revenue ' || coalesce(x.currency, y.currency) || ' is '
               || coalesce(y.amount, 0) || ', expected ' || coalesce(x.amount, 0)
        FROM expected x FULL JOIN actual y ON y.currency = x.currency
        WHERE coalesce(x.amount, 0) <> coalesce(y.amount, 0)
    """,
    "6. payment.amount = platform_fee + worker_amount": """
        SELECT 'payment ' || id || ': ' || amount || ' <> ' || platform_fee || ' + '
               || worker_amount
        FROM payments WHERE amount <> platform_fee + worker_amount
    """,
    "7. a worker's transaction history adds up to its available balance": """
        WITH history AS (
            SELECT t.user_id, t.currency, sum(t.amount) AS amount
            FROM payment_transactions t JOIN users u ON u.id = t.user_id
            WHERE u.role = 'worker' GROUP BY 1, 2
        )
        SELECT 'worker ' || a.owner_id || ' ' || a.currency || ': history sums to '
               || coalesce(h.amount, 0) || ', available is ' || a.balance
        FROM ledger_accounts a
        LEFT JOIN history h ON h.user_id = a.owner_id AND h.currency = a.currency
        WHERE a.kind = 'worker_available' AND a.balance <> coalesce(h.amount, 0)
    """,
    "8. only completed Stripe payouts are reversed, never by more than their amount, "
    "and each succeeded reversal (and only those) has its entry": """
        SELECT 'payout ' || w.id || ' (' || w.status || ', ' || w.payment_method
               || ') of ' || w.amount || ' has reversals of '
               || coalesce(sum(r.amount) FILTER (WHERE r.status <> 'failed'), 0)
        FROM worker_payouts w JOIN payout_reversals r ON r.payout_id = w.id
        GROUP BY w.id
        HAVING coalesce(sum(r.amount) FILTER (WHERE r.status <> 'failed'), 0) > w.amount
            OR w.payment_method <> 'stripe'
            OR (w.status <> 'completed' AND bool_or(r.status <> 'failed'))
        UNION ALL
        SELECT 'reversal ' || r.id || ' (' || r.status || ') of payout ' || r.payout_id
               || CASE WHEN e.id IS NULL THEN ' succeeded without its entry'
                       ELSE ' has an entry but did not succeed' END
        FROM payout_reversals r
        LEFT JOIN journal_entries e ON e.key = 'payout-' || r.payout_id || '-reversal-' || r.id
        WHERE (r.status = 'succeeded') <> (e.id IS NOT NULL)
    """,
    "9. provider fees booked = the fees the providers reported on captures"
    " - what they gave back on refunds": """
        WITH reported AS (
            SELECT payment_method AS provider, currency, sum(fee) AS amount FROM (
                SELECT payment_method, currency, provider_fee AS fee
                FROM payments WHERE provider_fee IS NOT NULL
                UNION ALL
                SELECT p.payment_method, p.currency, -r.provider_fee_refunded
                FROM payment_refunds r JOIN payments p ON p.id = r.payment_id
                WHERE r.status = 'succeeded' AND r.provider_fee_refunded <> 0
            ) x GROUP BY 1, 2
        ), booked AS (
            SELECT split_part(code, ':', 2) AS provider, currency, -balance AS amount
            FROM ledger_accounts WHERE kind = 'provider_fees'
        )
        SELECT 'provider fees ' || coalesce(x.provider, y.provider) || ' '
               || coalesce(x.currency, y.currency) || ': booked ' || coalesce(y.amount, 0)
               || ', reported ' || coalesce(x.amount, 0)
        FROM reported x FULL JOIN booked y
          ON y.provider = x.provider AND y.currency = x.currency
        WHERE coalesce(x.amount, 0) <> coalesce(y.amount, 0)
    """,
    "10. net revenue (fee revenue - provider fees - losses) from postings = from balances": """
        WITH accounts AS (
            SELECT id, currency, balance FROM ledger_accounts
            WHERE kind IN ('platform_fee_revenue', 'provider_fees', 'platform_losses')
        ), from_balances AS (
            SELECT currency, sum(balance) AS amount FROM accounts GROUP BY 1
        ), from_postings AS (
            SELECT a.currency, sum(p.amount) AS amount
            FROM postings p JOIN accounts a ON a.id = p.account_id GROUP BY 1
        )
        SELECT 'net revenue ' || coalesce(b.currency, q.currency) || ': balances say '
               || coalesce(b.amount, 0) || ', postings ' || coalesce(q.amount, 0)
        FROM from_balances b FULL JOIN from_postings q ON q.currency = b.currency
        WHERE coalesce(b.amount, 0) <> coalesce(q.amount, 0)
    """,
    "11. a booking's milestones (as many as it counts) add up to its amount, and on its"
    " live payment the"
    " milestones' released and refunded amounts add up to the payment's": """
        SELECT 'booking ' || b.id || ': milestones ' || sum(m.amount) || ' of '
               || b.amount || ', released ' || sum(m.released_amount) || ' of '
               || coalesce(min(p.released_amount), 0) || ', refunded '
               || sum(m.refunded_amount) || ' of ' || coalesce(min(p.refunded_amount), 0)
        FROM booking_milestones m
        JOIN bookings b ON b.id = m.booking_id
        LEFT JOIN payments p ON p.booking_id = b.id AND p.status <> 'failed'
        GROUP BY b.id
        HAVING sum(m.amount) <> b.amount OR count(m.id) <> b.milestone_count
            OR sum(m.released_amount) <> coalesce(min(p.released_amount), 0)
            OR sum(m.refunded_amount) <> coalesce(min(p.refunded_amount), 0)
    """,
}


async def verify(session: AsyncSession) -> list[str]:
    """Every broken invariant as 'invariant: the row that breaks it'; empty when sound."""
    problems: list[str] = []
    for name, query in CHECKS.items():
        rows = (await session.execute(text(query))).scalars().all()
        problems.extend(f"{name}: {row}" for row in rows)
    return problems
