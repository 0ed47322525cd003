"""The engine never puts SQL parameters in an error (they reach the log: tokens, emails)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from handwork_payments.runtime import Runtime


async def test_a_failed_statement_does_not_show_its_parameters(runtime: Runtime) -> None:
    async with runtime.engine.connect() as conn:
        with pytest.raises(DBAPIError) as failed:
            await conn.execute(text("SELECT :value = 'x'"), {"value": "token\x00s3cret-abc"})
    assert "s3cret-abc" not in str(failed.value)
    assert "hidden" in str(failed.value)
