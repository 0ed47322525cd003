"""Personal data in audit entries, kept apart so that erasure can remove it without
touching what the chain covers: the chain hashes `personal_digest`, a digest of the
personal part with a random nonce (so a digest left behind after erasure cannot be matched
against a guessed email)."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any

# Keys whose values are about a person, wherever they appear in before/after.
PERSONAL_KEYS = frozenset(
    {"email", "paypal_email", "stripe_account_id", "full_name", "client_ip", "reason"}
)
# Any other string value that holds an email address (a provider's message naming a
# receiver) is personal too.
_EMAIL = re.compile(r"[^@\s\"']+@[^@\s\"']+\.[^@\s\"']+")


def canonical(value: Any) -> str:
    """The one JSON text a value hashes as (sorted keys, no spaces, ASCII)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest(personal: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(personal).encode()).hexdigest()


def _is_personal(key: str, value: Any) -> bool:
    return key in PERSONAL_KEYS or (isinstance(value, str) and bool(_EMAIL.search(value)))


def split(
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    extra: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]:
    """(before, after, personal): personal values moved out of before/after into one
    document {"nonce", "before", "after", "details"}; None when there are none."""
    personal: dict[str, Any] = {}
    kept: list[dict[str, Any] | None] = []
    for name, part in (("before", before), ("after", after)):
        if part is None:
            kept.append(None)
            continue
        moved = {k: v for k, v in part.items() if _is_personal(k, v)}
        kept.append({k: v for k, v in part.items() if k not in moved})
        if moved:
            personal[name] = moved
    if extra:
        personal["details"] = extra
    if not personal:
        return kept[0], kept[1], None
    personal["nonce"] = secrets.token_hex(16)
    # As stored and read back (jsonb): what the digest covers must be what verify reads.
    normal: dict[str, Any] = json.loads(canonical(personal))
    return kept[0], kept[1], normal
