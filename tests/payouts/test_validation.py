"""Bad input on the payout endpoints (payout methods, payouts) answers a clear 4xx with
`{"detail": "..."}` and changes nothing: the cases of tests/http/validation_cases.py on
this package's paths, on a world of their own (tests/http/world.py, tests/http/cases.py)."""

from __future__ import annotations

import pytest

from tests.http.cases import Case, check
from tests.http.validation_cases import cases_for
from tests.http.world import World, bad_input_fixtures

world, clean_database = bad_input_fixtures()


@pytest.mark.parametrize("c", cases_for("payouts"))
async def test_bad_input_is_a_4xx_with_a_detail_and_changes_nothing(world: World, c: Case) -> None:
    await check(world, c)
