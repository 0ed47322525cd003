"""schemathesis over every operation of /openapi.json, as a client, a worker and an admin.

Each operation gets EXAMPLES schema-valid and EXAMPLES schema-invalid requests (generated
once, deterministically: derandomized, no example database, no shrinking), each sent
with each role's bearer token. Operations with path parameters draw them half the time
from real objects (a held payment, its booking, a dispute under review, a pending payout,
an unprocessed webhook delivery, a simulator intent), so that the code past the 404 runs
too. Every answer must pass three checks: no server error (5xx), the body conforms to the
declared schema, and the status is one the operation declares.

Nothing is excluded: the webhooks answer unsigned fuzz with 400 (their signatures are
proven by the bad-input corpus), the simulator's routes and /health are fuzzed like the
rest. Requests go to the ASGI app in this process, on the test's event loop (schemathesis
only generates and validates: its own ASGI client would run the app on another loop,
away from the runtime's connection pool).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from handwork_payments.app import create_app
from handwork_payments.ledger.verify import verify
from handwork_payments.runtime import Runtime
from tests.helpers import Api
from tests.http.world import World, seeded

pytestmark = pytest.mark.schemathesis

EXAMPLES = 25  # per operation and generation mode; each sent as every role
ROLES = ("client", "worker", "admin")
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
# Path parameter -> the world's object it names.
REAL_IDS = {
    "booking_id": "held_booking",
    "payment_id": "held",
    "dispute_id": "dispute",
    "payout_id": "payout",
    "delivery_id": "delivery",
    "intent_id": "intent",
    "user_id": "worker_id",
    "review_id": "review",
}
# Path parameter -> the world's object it always names: the account routes (suspend,
# reactivate, erase) must never act on the parties whose tokens the fuzzing sends.
ONLY_IDS = {"user_id": "fuzz_user"}

GENERATION = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def _labels() -> list[str]:
    """Every operation of the document, at collection (the app's routes need no database);
    `test_every_operation_is_fuzzed` proves the runtime's app has the same ones."""
    paths = create_app().openapi()["paths"]
    return [f"{method.upper()} {path}" for path, item in paths.items() for method in item]


@dataclass
class Tally:
    """What the run did, printed at the end (`-s`) and in the report."""

    requests: int = 0
    unsent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    operations: set[str] = field(default_factory=set)
    # Schema-valid requests answered 422 (malformed): the schema is looser than the code.
    # Measured, not asserted: one example per operation, for the report.
    rejected_valid: dict[str, str] = field(default_factory=dict)


TALLY = Tally()


@pytest.fixture(autouse=True)
def clean_database() -> None:
    """Overrides conftest's: the operations share one world (fuzzing acts on it, which is
    the point), and the ledger's invariants are verified once, after the last operation."""


@pytest.fixture(scope="module")
async def world(runtime: Runtime) -> AsyncIterator[World]:
    async with seeded(runtime) as built:
        built.ids["fuzz_user"] = (await Api(built.http, runtime).user("client")).id
        yield built
    async with runtime.sessions() as session:
        problems = await verify(session)
    assert problems == [], "ledger invariants broken by fuzzing:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def schema(world: World) -> Any:
    return schemathesis.openapi.from_dict(world.openapi)


def generate(operation: Any, real: dict[str, Any]) -> list[Any]:
    cases: list[Any] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategy = operation.as_strategy(generation_mode=mode)
        names = {p.name for p in operation.path_parameters}
        fixed = {name: real[key] for name, key in REAL_IDS.items() if name in names}
        only = {name: real[key] for name, key in ONLY_IDS.items() if name in names}
        if only:
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=only)
        elif fixed:
            with_real = operation.as_strategy(generation_mode=mode, path_parameters=fixed)
            strategy = st.one_of(strategy, with_real)

        @GENERATION
        @given(strategy)
        def collect(case: Any) -> None:
            cases.append(case)

        try:
            collect()
        except Unsatisfiable:
            # Only the negative mode, for an operation that takes no input at all.
            assert mode is GenerationMode.NEGATIVE, operation.label
    return cases


def _request(kwargs: dict[str, Any]) -> dict[str, Any]:
    """requests' keyword arguments (what schemathesis serialises a case to) for httpx."""
    out = {k: kwargs[k] for k in ("method", "url", "headers", "params") if k in kwargs}
    if "json" in kwargs:
        out["json"] = kwargs["json"]
    data = kwargs.get("data")
    if isinstance(data, dict):
        out["data"] = data
    elif data is not None:
        out["content"] = data
    return out


async def send(http: httpx.AsyncClient, case: Any, token: dict[str, str]) -> httpx.Response | None:
    kwargs = _request(case.as_transport_kwargs(base_url="http://test", headers=token))
    try:
        return await http.request(**kwargs)
    except (UnicodeEncodeError, httpx.InvalidURL, httpx.LocalProtocolError, TypeError):
        # A header or URL no HTTP client can put on the wire: never reaches a server.
        return None


@pytest.mark.parametrize("label", _labels())
async def test_operation(label: str, world: World, schema: Any) -> None:
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the runtime's /openapi.json"
    TALLY.operations.add(label)
    cases = generate(operation, world.ids)
    app = create_app(world.runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    found: dict[tuple[str, str, int], str] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for role in ROLES:
            token = world.parties[role].headers
            for case in cases:
                response = await send(http, case, token)
                if response is None:
                    TALLY.unsent += 1
                    continue
                TALLY.requests += 1
                TALLY.statuses[response.status_code] += 1
                if response.status_code == 422 and case.meta.generation.mode.is_positive:
                    TALLY.rejected_valid.setdefault(label, response.text[:200])
                try:
                    case.validate_response(response, checks=CHECKS)
                except FailureGroup as group:
                    for failure in group.exceptions:
                        kind = type(failure).__name__
                        TALLY.failures[kind] += 1
                        key = (role, kind, response.status_code)
                        text = f"{failure.title}: {case.as_curl_command()} -> {response.text:.300}"
                        found.setdefault(key, text)
    assert not found, f"{label}:\n" + "\n".join(
        f"  {role} {kind} {status}: {text}" for (role, kind, status), text in found.items()
    )


def test_every_operation_is_fuzzed_and_the_figures(world: World) -> None:
    live = {f"{m.upper()} {p}" for p, item in world.openapi["paths"].items() for m in item}
    assert live == set(_labels()), live ^ set(_labels())
    print(
        f"\nschemathesis: {len(TALLY.operations)} operations, {TALLY.requests} requests "
        f"({TALLY.unsent} unsendable), statuses {dict(sorted(TALLY.statuses.items()))}, "
        f"failures {dict(TALLY.failures)}"
    )
    for label, detail in sorted(TALLY.rejected_valid.items()):
        print(f"  schema-valid input answered 422: {label}: {detail}")
