"""The engine's errors and logs do not carry a statement's parameters."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from handwork_payments.runtime import Runtime


async def test_a_database_error_does_not_show_the_parameters(runtime: Runtime) -> None:
    # A NUL in text, as a caller once sent in a simulator token (issue 9).
    secret = "password-of-someone\x00"
    with pytest.raises(DBAPIError) as caught:
        async with runtime.engine.connect() as conn:
            await conn.execute(text("SELECT CAST(:value AS text)"), {"value": secret})
    assert "NUL" in str(caught.value)  # the error itself is still told
    assert "password-of-someone" not in str(caught.value)
