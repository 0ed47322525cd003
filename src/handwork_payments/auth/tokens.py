from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt

ALGORITHM = "HS256"
MAX_USER_ID = 2**63 - 1  # users.id is a BIGINT


def issue(user_id: int, secret: str, expire_minutes: int) -> str:
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(minutes=expire_minutes)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def subject(token: str, secret: str) -> int | None:
    """The user id a valid, unexpired token names; None otherwise."""
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
    return user_id if 0 < user_id <= MAX_USER_ID else None
