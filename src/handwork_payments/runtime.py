"""What a running process shares: settings, the database, the providers, the cipher."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from handwork_payments.auth.passwords import Passwords
from handwork_payments.db import Sessions, make_autocommit_sessions, make_engine, make_sessions
from handwork_payments.installation import provider_ids
from handwork_payments.kit.crypto import MetadataCipher
from handwork_payments.kit.outbound import Outbound
from handwork_payments.providers import Providers, build_providers
from handwork_payments.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    database_url: str
    engine: AsyncEngine
    sessions: Sessions
    providers: Providers
    cipher: MetadataCipher
    jwt_secret: str
    passwords: Passwords
    # Sessions without BEGIN/ROLLBACK round trips (autocommit), for reads: each statement
    # sees committed data, as it would under READ COMMITTED in a transaction. Also for a
    # write that is one statement (atomic by itself), such as an event marked delivered.
    read_sessions: Sessions
    # POSTs to URLs we do not own (the marketplace's events, alerts' webhook) go out through
    # one client: its connections are kept between them (a client per POST paid a TLS
    # context and a connection each).
    outbound: Outbound

    @classmethod
    def build(cls, settings: Settings, database_url: str) -> Runtime:
        engine = make_engine(database_url, settings.db_pool_size)
        sessions = make_sessions(engine)
        jwt_secret = settings.jwt_secret
        if not jwt_secret:
            jwt_secret = secrets.token_urlsafe(32)
            # `serve`'s banner warns; production refuses it.
            log.info(
                "JWT_SECRET is not set: tokens are signed with a generated key and stop "
                "working when this process restarts (set it when running several processes)"
            )
        return cls(
            settings=settings,
            database_url=database_url,
            engine=engine,
            sessions=sessions,
            providers=build_providers(settings, sessions, provider_ids(settings, database_url)),
            cipher=MetadataCipher(settings.metadata_encryption_keys),
            jwt_secret=jwt_secret,
            read_sessions=make_autocommit_sessions(engine),
            outbound=Outbound(),
            passwords=Passwords(
                settings.password_hash_time_cost,
                settings.password_hash_memory_kib,
                settings.password_hash_concurrency,
            ),
        )

    async def aclose(self) -> None:
        await self.outbound.aclose()
        await self.providers.aclose()
        await self.engine.dispose()


# The Runtime of this process, for code that has no request to take it from: procrastinate
# tasks. Set once by whoever starts the work (the worker, `serve`'s in-process worker).
_current: Runtime | None = None


def set_current_runtime(runtime: Runtime) -> None:
    global _current
    _current = runtime


def current_runtime() -> Runtime:
    assert _current is not None, "tasks run only inside a worker started by worker.py"
    return _current
