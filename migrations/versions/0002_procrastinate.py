"""procrastinate's job queue schema

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Jobs live in the same database as the money so that a state change and the job it causes
commit together. The schema is the one shipped with the locked procrastinate version; an
upgrade of procrastinate adds a migration that applies its delta files.
"""

from __future__ import annotations

from alembic import op
from procrastinate.schema import SchemaManager

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(SchemaManager.get_schema())


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers,
            procrastinate_jobs, procrastinate_workers CASCADE;
        DROP TYPE IF EXISTS procrastinate_job_event_type, procrastinate_job_status,
            procrastinate_job_to_defer_v1 CASCADE;
        """
    )
