from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from handwork_payments import migrate
from handwork_payments.app import create_app
from handwork_payments.audit import chain
from handwork_payments.ledger.repository import forget_accounts
from handwork_payments.ledger.verify import verify
from handwork_payments.models import Base
from handwork_payments.runtime import Runtime
from handwork_payments.settings import Settings
from tests.database import fresh_database
from tests.helpers import Api

TEST_WEBHOOK_SECRET = "whsec_test_secret"

TABLES = ", ".join(
    [
        *(t.name for t in Base.metadata.sorted_tables),
        "procrastinate_jobs",
        "procrastinate_events",
        "procrastinate_periodic_defers",
    ]
)


# DELETE with triggers and foreign keys off is ten times faster than TRUNCATE on tables
# this small (TRUNCATE recreates every table's files), and identities start again at 1.
# procrastinate_workers is left alone: a server a test module keeps running has its worker
# registered there, and a restarted id would collide with a row still present. One round
# trip (statements without parameters may share one): this runs before every test.
_EMPTY = ";\n".join(
    [
        "SET LOCAL session_replication_role = replica",
        *(f"DELETE FROM {table}" for table in TABLES.split(", ")),
        """DO $$ DECLARE s record; BEGIN
         FOR s IN SELECT sequencename FROM pg_sequences
                  WHERE schemaname = 'public'
                    AND sequencename NOT LIKE 'procrastinate_workers%' LOOP
           EXECUTE format('ALTER SEQUENCE %I RESTART', s.sequencename);
         END LOOP;
       END $$""",
    ]
)


async def empty_tables(runtime: Runtime) -> None:
    """Every table empty, as after the migrations (for tests sharing one database)."""
    async with runtime.engine.begin() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.execute(_EMPTY)
    forget_accounts()  # the ledger accounts this process remembers are gone


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with fresh_database() as url:
        migrate.upgrade(url)
        yield url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for tests: simulators, fixed secrets, nothing read from the environment
    that could point a test at a real provider."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "jwt_secret": "test-jwt-secret-0123456789abcdef",
        "stripe_secret_key": None,
        "stripe_webhook_secret": TEST_WEBHOOK_SECRET,
        "paypal_client_id": None,
        "paypal_client_secret": None,
        "platform_fee_percentage": "5.0",
        "metadata_encryption_keys": "qEo2oYw0Ff7p3TzN2x0b1m3a9Y7tV4Xk8cQ5rW6uJ1s=",
        "db_pool_size": 10,
        # Cheap argon2 parameters: the tests exercise the real hashing, not its cost.
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 1024,
        # Tests log in and register far more often than people; the limits' own tests
        # lower these again.
        "login_max_attempts_per_ip_per_minute": 100_000,
        "registrations_per_ip_per_hour": 100_000,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    built = Runtime.build(make_settings(database_url), database_url)
    yield built
    await built.aclose()


@pytest.fixture(autouse=True)
async def clean_database(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Empty tables before each test that uses the database; after it, the ledger's
    invariants must hold and the audit chain (sealed now) must be intact, whatever the
    test did."""
    if "runtime" not in request.fixturenames:
        yield
        return
    current: Runtime = request.getfixturevalue("runtime")
    await empty_tables(current)
    yield
    async with current.sessions() as session:
        problems = await verify(session)
    assert problems == [], "ledger invariants broken:\n" + "\n".join(problems)
    await chain.seal(current.sessions)
    async with current.sessions() as session:
        verdict = await chain.verify(session)
    assert verdict.problems == [], "audit chain broken:\n" + "\n".join(verdict.problems)


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
def api(client: httpx.AsyncClient, runtime: Runtime) -> Api:
    return Api(client, runtime)


@pytest.fixture
async def worker(runtime: Runtime) -> AsyncIterator[None]:
    """A procrastinate worker running in the test's event loop, stopped after the test."""
    from handwork_payments.worker import running_worker

    async with running_worker(runtime, concurrency=2, name="test"):
        yield
