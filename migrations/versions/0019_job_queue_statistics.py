"""the job queue's statistics follow a backlog, not the queue's history

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-27

procrastinate finds the next job with a query whose plan depends on the table's
statistics. Finished jobs stay in `procrastinate_jobs`, so by default (analyze after 10%
of the table changed) a table of a million finished jobs is analyzed again only after
100,000 changes: a burst of jobs (deliveries piling up while a receiver is down) keeps
statistics that say "no job waiting", the planner sorts every waiting job at each fetch,
and the worker crawls. Measured in the jobs bench: 2,000 waiting deliveries ran at 26/s
on stale statistics, 134/s once analyzed (one fetch 58 ms against under 1 ms). Absolute
thresholds analyze the queue after every 1,000 changed jobs, and vacuum its dead rows
(each job is updated three times) after every 10,000, whatever the table's size.
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE procrastinate_jobs SET ("
        "autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 1000, "
        "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000)"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE procrastinate_jobs RESET (autovacuum_analyze_scale_factor, "
        "autovacuum_analyze_threshold, autovacuum_vacuum_scale_factor, "
        "autovacuum_vacuum_threshold)"
    )
