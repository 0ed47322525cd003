"""The database's own speed, measured in the same run on the same PostgreSQL: pgbench's
TPC-B, and the SQL of one ledger posting (lock two accounts in id order, an entry, two
postings, two balance updates, in one transaction) on random and on two hot accounts."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
ACCOUNTS = 100_000
# TPC-B's branches: at least one per client, or they all wait on one row.
SCALE = int(os.environ.get("BENCH_PGBENCH_SCALE", "16"))

LEDGER_SCHEMA = f"""
CREATE TABLE l_accounts (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0);
CREATE TABLE l_entries (id bigserial PRIMARY KEY, kind text NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE l_postings (id bigserial PRIMARY KEY,
                         entry_id bigint NOT NULL REFERENCES l_entries(id),
                         account_id bigint NOT NULL REFERENCES l_accounts(id),
                         amount bigint NOT NULL);
CREATE INDEX ON l_postings (account_id);
INSERT INTO l_accounts (id) SELECT g FROM generate_series(1, {ACCOUNTS}) g;
"""

POSTING = """
BEGIN;
SELECT id FROM l_accounts WHERE id IN (:lo, :hi) ORDER BY id FOR UPDATE;
INSERT INTO l_entries (kind) VALUES ('bench');
INSERT INTO l_postings (entry_id, account_id, amount)
  VALUES (currval('l_entries_id_seq'), :lo, 100), (currval('l_entries_id_seq'), :hi, -100);
UPDATE l_accounts SET balance = balance + 100 WHERE id = :lo;
UPDATE l_accounts SET balance = balance - 100 WHERE id = :hi;
END;
"""
RANDOM_PAIR = (
    f"\\set lo random(1, {ACCOUNTS // 2})\n\\set hi random({ACCOUNTS // 2 + 1}, {ACCOUNTS})\n"
)
HOT_PAIR = "\\set lo 1\n\\set hi 2\n"


@dataclass(frozen=True)
class Baselines:
    tpcb: float
    posting: float
    posting_hot: float


def _pgbench(url: str, *args: str) -> str:
    parts = urlsplit(url)
    cmd = [
        PGBENCH,
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 5432),
        "-U",
        parts.username or "postgres",
        *args,
        parts.path.lstrip("/"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return done.stdout + done.stderr


def _tps(output: str) -> float:
    found = re.search(r"tps = ([\d.]+)", output)
    assert found, output
    return float(found.group(1))


def prepare(url: str) -> None:
    _pgbench(url, "-i", "-q", "-s", str(SCALE))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(LEDGER_SCHEMA)
        conn.execute("VACUUM ANALYZE")


def measure(url: str, clients: int, seconds: float) -> Baselines:
    duration = str(max(1, round(seconds)))
    common = ("-c", str(clients), "-j", str(min(clients, 2)), "-T", duration, "-n")
    tpcb = _tps(_pgbench(url, *common))
    rates = []
    for pair in (RANDOM_PAIR, HOT_PAIR):
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write(pair + POSTING)
        rates.append(_tps(_pgbench(url, *common, "-f", script.name)))
        Path(script.name).unlink()
    return Baselines(tpcb, rates[0], rates[1])
