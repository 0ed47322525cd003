"""The signature of a delivery, as Stripe signs its own: `t=<unix>,v1=<hex>` where hex is
HMAC-SHA256 of "<t>.<body>" under MARKETPLACE_WEBHOOK_SECRET. The timestamp inside the
signed text lets a receiver refuse an old delivery replayed by someone who recorded it."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Handwork-Signature"


def signature(body: bytes, secret: str, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(body: bytes, header: str, secret: str, *, now: int, tolerance: int = 300) -> bool:
    """What a receiver does (the README shows it): the tests' receiver uses it."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = signature(body, secret, timestamp).split("v1=", 1)[1]
    fresh = abs(now - timestamp) <= tolerance
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))
