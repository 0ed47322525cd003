"""Domain errors: small classes with an HTTP status, rendered by one handler as {"detail"}."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorBody(BaseModel):
    detail: str


class DomainError(Exception):
    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(DomainError):
    """A rule of the domain forbids it (e.g. insufficient balance)."""

    status_code = 400


class UnparsableBody(BadRequest):
    """The body is no JSON (not UTF-8, malformed, nested too deep): FastAPI's own 400,
    declared with this class on the endpoints that declare no other 400."""


class Unauthorized(DomainError):
    status_code = 401


class Forbidden(DomainError):
    status_code = 403


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    """The object's state does not allow it (e.g. releasing a disputed payment)."""

    status_code = 409


class Unprocessable(DomainError):
    status_code = 422


class PaymentDeclined(DomainError):
    status_code = 402


class ProviderUnavailable(DomainError):
    """The provider failed or did not answer; the operation can be retried safely."""

    status_code = 502


def error_responses(*errors: type[DomainError]) -> dict[int | str, dict[str, object]]:
    """`responses=` for an endpoint, so the OpenAPI document lists its errors."""
    return {
        e.status_code: {"model": ErrorBody, "description": e.__doc__ or e.__name__} for e in errors
    }


class UnderReview(Conflict):
    """A risk review of the payment or payout is not decided (or was rejected): its money
    does not move until an admin approves it."""


class RiskBlocked(PaymentDeclined):
    """The risk rules refused the payment. The detail never says which rule fired (that
    would teach a fraudster the thresholds); admins read it in the audit log."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("The payment cannot be accepted; contact support if this is unexpected")
        self.reasons = reasons
