"""The IP address of the user whose request is being served, for the audit rows of what
they do: the payer's address at payment and release is evidence against a chargeback.

Set by the bearer-token dependency (http.deps) in the request's own task, so it is seen by
the service command the endpoint runs and by nothing else (jobs and webhooks have none)."""

from __future__ import annotations

from contextvars import ContextVar

_client_ip: ContextVar[str | None] = ContextVar("client_ip", default=None)


def set_client_ip(address: str | None) -> None:
    _client_ip.set(address)


def client_ip() -> str | None:
    return _client_ip.get()
