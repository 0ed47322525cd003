from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt

ALGORITHM = "HS256"
MAX_USER_ID = 2**63 - 1  # users.id is a BIGINT
# Tokens this process has verified, with their subject and expiry: a client sends the same
# token with every request, and decoding and checking it again cost a twentieth of a read's
# CPU. Only valid tokens enter, under the secret that verified them; a remembered one is
# refused once it expires, as PyJWT would. What a token may do is decided by the user's
# row, read on every request (suspension, role), never by this. Bounded: the oldest go.
_VERIFIED: dict[tuple[str, str], tuple[int, float]] = {}
_VERIFIED_MAX = 10_000


def issue(user_id: int, secret: str, expire_minutes: int) -> str:
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(minutes=expire_minutes)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def subject(token: str, secret: str) -> int | None:
    """The user id a valid, unexpired token names; None otherwise."""
    known = _VERIFIED.get((secret, token))
    if known is not None:
        user_id, expires = known
        return user_id if time.time() < expires else None
    verified = _verify(token, secret)
    if verified is None:
        return None
    user_id, expires = verified
    if len(_VERIFIED) >= _VERIFIED_MAX:
        del _VERIFIED[next(iter(_VERIFIED))]
    _VERIFIED[(secret, token)] = (user_id, expires)
    return user_id


def _verify(token: str, secret: str) -> tuple[int, float] | None:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp"]})
    except jwt.PyJWTError:
        return None
    sub = claims.get("sub")
    # Only what `issue` writes: a decimal string of a positive id that fits users.id (a
    # BIGINT). Anything else (2**70, "-1", "1e3", a list) is no user: a 401, not a query
    # PostgreSQL would refuse.
    if not isinstance(sub, str) or not sub.isascii() or not sub.isdecimal():
        return None
    user_id = int(sub)
    return (user_id, float(claims["exp"])) if 0 < user_id <= MAX_USER_ID else None
