"""This installation's identity towards the providers: the prefix of every id it sends
them (PROVIDER_ID_PREFIX, else the one kept in the `installation` table)."""

from __future__ import annotations

import psycopg

from handwork_payments.db import libpq_url
from handwork_payments.providers.base import ProviderIds
from handwork_payments.settings import Settings

# Every process agrees: the row is made once (by migration 0011, or here if it is gone),
# and a process racing another's insert reads the winner's row.
_ENSURE = (
    "INSERT INTO installation (id, provider_id_prefix) "
    "VALUES (1, 'hw' || substr(md5(random()::text || clock_timestamp()::text), 1, 10)) "
    "ON CONFLICT (id) DO NOTHING"
)
_READ = "SELECT provider_id_prefix FROM installation WHERE id = 1"


def provider_ids(settings: Settings, database_url: str) -> ProviderIds:
    """The setting, or the prefix kept in the database (read once, when a process starts)."""
    if settings.provider_id_prefix:
        return ProviderIds(settings.provider_id_prefix)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(_ENSURE)
        row = conn.execute(_READ).fetchone()
    assert row is not None
    return ProviderIds(str(row[0]))
