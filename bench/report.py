"""The bench's verdict: every target of issue 11 as a ratio against its baseline from
the same run, and the plot of throughput and p99 against connections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from bench.baseline import Baselines
from bench.load import Load

READS = ("earnings", "client summary", "payments list", "transactions", "payment by id")


def _load_line(name: str, one: Load, many: Load, per: int = 1, unit: str = "req/s") -> str:
    def cell(m: Load) -> str:
        bad = f" ({m.non2xx} non-2xx, {m.errors} errors)" if m.non2xx or m.errors else ""
        rate = m.rate / per
        return f"{rate:8.1f} {unit} p50 {m.p50_ms:6.1f} ms p99 {m.p99_ms:6.1f} ms{bad}"

    return f"  {name:<16} 1 proc: {cell(one)} | N procs: {cell(many)}"


def _target(label: str, value: float, goal: float, at_most: bool = False) -> str:
    met = value <= goal if at_most else value >= goal
    sign = "<=" if at_most else ">="
    return f"  [{'met' if met else 'NOT MET'}] {label}: {value:.3f} (target {sign} {goal:g})"


def render(
    bases: Baselines,
    single: dict[str, Any],
    multi: dict[str, Any],
    slow: Load,
    slow_ms: int,
    slow_connections: int,
    cores: int,
    connections: int,
) -> str:
    before, large, grown = multi["before growth"], multi["large"], multi["grown"]
    lines = [
        "baselines (pgbench, same PostgreSQL, same run)",
        f"  TPC-B: {bases.tpcb:.0f} tps; ledger posting: {bases.posting:.0f} tps; "
        f"on 2 hot accounts: {bases.posting_hot:.0f} tps",
        f"throughput at the bench's connections (N procs = {cores})",
    ]
    for name in ("health", *READS):
        lines.append(_load_line(name, single[name], multi[name]))
    lines.append(
        _load_line("escrow flows", single["escrow flows"], multi["escrow flows"], 3, "flows/s")
    )
    lines.append(
        _load_line("refund flows", single["refund flows"], multi["refund flows"], 3, "flows/s")
    )
    lines.append(_load_line("payout requests", single["payout requests"], multi["payout requests"]))
    lines.append(
        f"  RSS per API process after the load: 1 proc {single['rss_mb']:.0f} MB, "
        f"N procs {multi['rss_mb']:.0f} MB"
    )
    lines.append(
        f"  slow provider ({slow_ms} ms a call), {slow_connections} connections, N procs: "
        f"{slow.rate / 3:.1f} flows/s p99 {slow.p99_ms:.0f} ms"
        + (f" ({slow.non2xx} non-2xx, {slow.errors} errors)" if slow.non2xx or slow.errors else "")
    )
    lines.append("targets (N procs)")
    for name in ("escrow flows", "refund flows", "payout requests"):
        lines.append(_target(f"{name}: requests/s / TPC-B", multi[name].rate / bases.tpcb, 0.25))
        lines.append(_target(f"{name}: p99 ms", multi[name].p99_ms, 50, at_most=True))
    lines.append(
        _target(
            "payout requests / hot ledger posting",
            multi["payout requests"].rate / bases.posting_hot,
            0.5,
        )
    )
    for name in READS:
        lines.append(_target(f"{name} / health", multi[name].rate / multi["health"].rate, 0.5))
        lines.append(
            _target(
                f"{name}: cost at {grown:,} postings / just before",
                before[name].rate / large[name].rate if large[name].rate else 99,
                1.2,
                at_most=True,
            )
        )
    ideal = slow_connections / (2 * slow_ms / 1000)
    lines.append(
        _target(
            f"slow provider flows/s / half the ideal {ideal:.0f}", slow.rate / 3 / (ideal / 2), 1.0
        )
    )
    lines.append(
        _target("RSS MB per API process", max(single["rss_mb"], multi["rss_mb"]), 150, at_most=True)
    )
    lines.append("  (GET /health in the list above: 1 proc vs N procs shows the cores used)")
    lines += _floors(bases, multi, connections)
    return "\n".join(lines)


def _floors(bases: Baselines, multi: dict[str, Any], connections: int) -> list[str]:
    """What the money targets ask, next to what the stack does with no work at all."""
    floor = multi["health"].rate / bases.tpcb
    return [
        "what bounds the money targets (N procs)",
        f"  GET /health (FastAPI, one SELECT 1 through SQLAlchemy) / TPC-B: {floor:.2f}: "
        f"a money POST at 0.25x TPC-B would cost {0.25 / floor:.0%} of a health check's "
        "CPU or less",
        f"  p99 <= 50 ms at {connections} closed-loop connections needs >= "
        f"{connections / 0.05:.0f} requests/s (Little's law: mean latency = connections / "
        "throughput)",
    ]


def grow_ledger(url: str, rows: int) -> int:
    """`rows` more postings, balanced pairs between escrow accounts of no payment, loaded with
    the append-only and balance triggers off (balanced by construction); returns the
    ledger's size after."""
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(
                "INSERT INTO ledger_accounts (code, kind, owner_id, currency, balance) "
                "SELECT 'escrow:' || g || ':USD', 'escrow', g, 'USD', 0 "
                "FROM generate_series(1000000, 1000999) g"
            )
            conn.execute(
                "INSERT INTO journal_entries (key, kind, description) "
                "SELECT 'bench-' || g, 'bench', 'bench' FROM generate_series(1, %s) g",
                (rows // 2,),
            )
            conn.execute(
                "INSERT INTO postings (entry_id, account_id, amount, currency) "
                "SELECT e.id, a.id, s.sign * 100, 'USD' FROM journal_entries e "
                "CROSS JOIN (VALUES (1), (-1)) s(sign) "
                "JOIN ledger_accounts a ON a.code = 'escrow:' "
                "  || (1000000 + (e.id * 7 + (s.sign + 1) / 2) % 1000) || ':USD' "
                "WHERE e.kind = 'bench'"
            )
            conn.execute(
                "UPDATE ledger_accounts a SET balance = s.total FROM "
                "(SELECT account_id, sum(amount) AS total FROM postings GROUP BY 1) s "
                "WHERE s.account_id = a.id AND a.owner_id >= 1000000"
            )
        conn.execute("VACUUM ANALYZE")
        return int(conn.execute("SELECT count(*) FROM postings").fetchone()[0])  # type: ignore[index]


def plot(sweep: dict[int, Load], bases: Baselines, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    connections = sorted(sweep)
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot(connections, [sweep[c].rate for c in connections], "o-", label="escrow POSTs/s")
    left.axhline(0.25 * bases.tpcb, linestyle=":", label="0.25 x pgbench TPC-B")
    left.set_xscale("log", base=2)
    left.set_xlabel("connections")
    left.set_ylabel("requests/s")
    right = left.twinx()
    right.plot(
        connections, [sweep[c].p99_ms for c in connections], "s--", color="tab:red", label="p99 ms"
    )
    right.axhline(50, color="tab:red", linestyle=":", label="p99 target 50 ms")
    right.set_ylabel("p99 latency (ms)")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.legend(handles, labels, loc="upper left", fontsize=8)
    left.set_title("Escrow flows (booking, card hold, release) against connections")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
