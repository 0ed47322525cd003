"""The one clock of the service: every timestamp we write comes from `now()` (UTC, aware).
Background jobs take `now` as an argument so tests can move time without patching this."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
