"""compliance: a sealed audit chain, personal data apart, account status, webhook retention

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27

- audit_log: append-only (a trigger refuses DELETE and every UPDATE but two: the sealer
  setting `chain_seq`/`row_hash` once, and erasure setting `personal` to null). Writers
  insert only; the sealer (audit/chain.py) numbers committed rows in order under an
  advisory lock and stores sha256(previous hash + canonical content). Personal data sits
  in `personal` (with a random nonce), covered by the hash through `personal_digest`, so
  erasing it leaves the chain intact. `audit_chain_head`: the last sealed link (a deleted
  tail is a head that no row matches).
- users.status: active | suspended | erased.
- journal_entries: completed payouts' descriptions no longer name the destination.
- webhook_deliveries: `body` nullable and `body_digest`: retention reduces an old
  processed delivery to its digest and event id.
"""

from __future__ import annotations

import hashlib
import json
import secrets

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APPEND_ONLY = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit_log is append-only: row % cannot be deleted', OLD.id;
    END IF;
    IF (NEW.id, NEW.actor_id, NEW.actor_kind, NEW.action, NEW.object_type, NEW.object_id,
        NEW.before, NEW.after, NEW.created_at, NEW.subject_id, NEW.personal_digest)
       IS DISTINCT FROM
       (OLD.id, OLD.actor_id, OLD.actor_kind, OLD.action, OLD.object_type, OLD.object_id,
        OLD.before, OLD.after, OLD.created_at, OLD.subject_id, OLD.personal_digest) THEN
        RAISE EXCEPTION 'audit_log is append-only: row % cannot be changed', OLD.id;
    END IF;
    -- Sealing: the chain columns are set once, never changed.
    IF OLD.chain_seq IS NOT NULL AND (NEW.chain_seq, NEW.row_hash)
       IS DISTINCT FROM (OLD.chain_seq, OLD.row_hash) THEN
        RAISE EXCEPTION 'audit_log row % is sealed', OLD.id;
    END IF;
    -- Erasure: personal data may only be removed, never rewritten.
    IF NEW.personal IS NOT NULL AND NEW.personal IS DISTINCT FROM OLD.personal THEN
        RAISE EXCEPTION 'audit_log row %: personal data can only be erased', OLD.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
"""

PERSONAL_KEYS = ("email", "paypal_email", "stripe_account_id", "full_name")


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("subject_id", sa.BigInteger(), nullable=True))
    op.add_column("audit_log", sa.Column("personal", JSONB(), nullable=True))
    op.add_column("audit_log", sa.Column("personal_digest", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("chain_seq", sa.BigInteger(), nullable=True))
    op.add_column("audit_log", sa.Column("row_hash", sa.String(64), nullable=True))
    op.create_unique_constraint("uq_audit_log_chain_seq", "audit_log", ["chain_seq"])
    op.create_index("ix_audit_log_subject_id", "audit_log", ["subject_id"])
    op.create_index("ix_audit_log_actor_id", "audit_log", ["actor_id"])
    op.create_index(
        "ix_audit_log_unsealed",
        "audit_log",
        ["id"],
        postgresql_where=sa.text("chain_seq IS NULL"),
    )
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("chain_seq", sa.BigInteger(), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_audit_chain_head_single_row"),
    )
    _move_personal_data()
    op.execute(APPEND_ONLY)
    # Payout entries named their destination (a PayPal email) until now; the append-only
    # ledger must keep no personal data, so the old descriptions lose it (only them).
    op.execute("ALTER TABLE journal_entries DISABLE TRIGGER journal_entries_append_only")
    op.execute(
        "UPDATE journal_entries SET description = regexp_replace(description, "
        "' sent to .*$', ' sent') WHERE kind = 'payout_complete' AND description LIKE '% sent to %'"
    )
    op.execute("ALTER TABLE journal_entries ENABLE TRIGGER journal_entries_append_only")

    op.add_column(
        "users",
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    )
    op.create_check_constraint(
        "ck_users_status", "users", "status IN ('active', 'suspended', 'erased')"
    )

    op.alter_column("webhook_deliveries", "body", existing_type=sa.Text(), nullable=True)
    op.add_column("webhook_deliveries", sa.Column("body_digest", sa.String(64), nullable=True))
    op.create_index(
        "ix_webhook_deliveries_retained",
        "webhook_deliveries",
        ["received_at"],
        postgresql_where=sa.text("body IS NOT NULL AND status = 'processed'"),
    )


def _move_personal_data() -> None:
    """Rows written before this migration kept emails in `after`: moved apart (they are
    unsealed, so no hash covers them yet), the way audit.service.record now writes them."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, object_type, object_id, after FROM audit_log WHERE after ?| :keys"),
        {"keys": list(PERSONAL_KEYS)},
    ).all()
    for row_id, object_type, object_id, after in rows:
        kept = {k: v for k, v in after.items() if k not in PERSONAL_KEYS}
        personal = {
            "nonce": secrets.token_hex(16),
            "after": {k: v for k, v in after.items() if k in PERSONAL_KEYS},
        }
        canonical = json.dumps(personal, sort_keys=True, separators=(",", ":"), default=str)
        conn.execute(
            sa.text(
                "UPDATE audit_log SET after = CAST(:after AS jsonb), "
                "personal = CAST(:personal AS jsonb), personal_digest = :digest, "
                "subject_id = :subject WHERE id = :id"
            ),
            {
                "after": json.dumps(kept),
                "personal": json.dumps(personal),
                "digest": hashlib.sha256(canonical.encode()).hexdigest(),
                "subject": object_id if object_type == "user" else None,
                "id": row_id,
            },
        )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_retained", table_name="webhook_deliveries")
    op.drop_column("webhook_deliveries", "body_digest")
    op.execute("UPDATE webhook_deliveries SET body = '' WHERE body IS NULL")
    op.alter_column("webhook_deliveries", "body", existing_type=sa.Text(), nullable=False)
    op.drop_constraint("ck_users_status", "users", type_="check")
    op.drop_column("users", "status")
    op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_table("audit_chain_head")
    op.drop_index("ix_audit_log_unsealed", table_name="audit_log")
    op.drop_index("ix_audit_log_actor_id", table_name="audit_log")
    op.drop_index("ix_audit_log_subject_id", table_name="audit_log")
    op.drop_constraint("uq_audit_log_chain_seq", "audit_log", type_="unique")
    for column in ("row_hash", "chain_seq", "personal_digest", "personal", "subject_id"):
        op.drop_column("audit_log", column)
