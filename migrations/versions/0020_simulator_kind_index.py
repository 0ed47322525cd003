"""the simulators find their objects by kind through an index

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-28

Every call to a simulated provider first looks for an injected fault (`kind = 'fault'`),
and PayPal's simulator finds orders and payout items by their JSON. Without an index on
(provider, kind) each such lookup read the whole `simulated_objects` table, which grows by
several rows per payment: measured in the API bench, 405 sequential scans reading 202,116
rows for 469 escrow POSTs on a table of 1,020 objects, and more with every payment after.
The demo, the bench and every test run on the simulators.
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_simulated_objects_provider_kind", "simulated_objects", ["provider", "kind"])


def downgrade() -> None:
    op.drop_index("ix_simulated_objects_provider_kind", table_name="simulated_objects")
