from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt

ALGORITHM = "HS256"
MAX_USER_ID = 2**63 - 1


def issue(user_id: int, secret: str, expire_minutes: int) -> str:
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(minutes=expire_minutes)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def subject(token: str, secret: str) -> int | None:
    """The user id a valid, unexpired token names; None otherwise."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp"]})
        user_id = int(claims["sub"])
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return None
    # Only an id the users table could hold (BIGINT identity): another would be a
    # database error, not an unknown user.
    return user_id if 0 < user_id <= MAX_USER_ID else None
