"""the payment story finds its marketplace events by index

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-27

`GET /api/v1/admin/payments/{id}/story` looks up the payment's marketplace events by
`data->>'id'` among the `payment.*` events: without an index that read every event ever
sent (a finding of round 2's first stop). A partial expression index over exactly that
predicate makes it one index scan.
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_marketplace_events_payment_id ON marketplace_events "
        "((data ->> 'id')) WHERE type LIKE 'payment.%'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_marketplace_events_payment_id")
