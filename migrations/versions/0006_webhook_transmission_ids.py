"""webhook transmission ids: a PayPal delivery's PAYPAL-TRANSMISSION-ID, unique per provider

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

- webhook_deliveries.transmission_id: offline, PayPal's signature covers only a CRC32 of
  the body, so a forged body of the same CRC32 could ride on a genuine delivery's headers.
  One body per transmission id: a second, different body under the same id is refused.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhook_deliveries", sa.Column("transmission_id", sa.String(length=255), nullable=True)
    )
    op.create_unique_constraint(
        "uq_webhook_deliveries_provider_transmission",
        "webhook_deliveries",
        ["provider", "transmission_id"],
    )


def downgrade() -> None:
    op.drop_constraint(
        "uq_webhook_deliveries_provider_transmission", "webhook_deliveries", type_="unique"
    )
    op.drop_column("webhook_deliveries", "transmission_id")
