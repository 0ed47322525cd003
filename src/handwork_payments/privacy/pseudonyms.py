"""Keyed hashes that replace a person's identifiers once erased: the same value always
gives the same pseudonym (an auditor holding the key can still tell that two records were
the same person's, or check a given email), but nobody without the key can reverse or
guess-check it, unlike a plain digest of an email."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from handwork_payments.settings import Settings

PREFIX = "erased:"


def key_of(settings: Settings, jwt_secret: str) -> bytes:
    """PSEUDONYM_KEY, or one derived from the JWT secret when it is unset."""
    if settings.pseudonym_key:
        return settings.pseudonym_key.encode()
    return hmac.new(jwt_secret.encode(), b"handwork-pseudonyms", hashlib.sha256).digest()


def pseudonym(key: bytes, value: str) -> str:
    mac = hmac.new(key, value.strip().lower().encode(), hashlib.sha256).hexdigest()
    return PREFIX + mac[:32]


class Scrubber:
    """Replaces a person's identifiers in free text and in JSON documents: identifiers
    (emails, account ids) wherever they occur, a name only where it is a whole string
    (a short name such as "Al" inside other words is no identifier of anyone)."""

    def __init__(self, key: bytes, identifiers: list[str], names: list[str]) -> None:
        self.key = key
        # Longest first: an email is replaced before an identifier it contains.
        self.identifiers = sorted({i.lower() for i in identifiers if i}, key=len, reverse=True)
        self.names = {n.strip().lower() for n in names if n.strip()}

    def mentions(self, value: str) -> bool:
        lowered = value.lower()
        return lowered.strip() in self.names or any(i in lowered for i in self.identifiers)

    def text(self, value: str) -> str:
        if value.strip().lower() in self.names:
            return pseudonym(self.key, value)
        for identifier in self.identifiers:
            start = value.lower().find(identifier)
            while start >= 0:
                replacement = pseudonym(self.key, identifier)
                value = value[:start] + replacement + value[start + len(identifier) :]
                start = value.lower().find(identifier, start + len(replacement))
        return value

    def document(self, value: Any) -> Any:
        """Every string of a JSON value (keys kept) with the identifiers replaced."""
        if isinstance(value, str):
            return self.text(value) if self.mentions(value) else value
        if isinstance(value, list):
            return [self.document(v) for v in value]
        if isinstance(value, dict):
            return {k: self.document(v) for k, v in value.items()}
        return value

    def json_text(self, body: str) -> str:
        """A stored JSON body with the identifiers replaced in its strings; a body that is
        no JSON is treated as text."""
        try:
            parsed = json.loads(body)
        except ValueError:
            return self.text(body)
        return json.dumps(self.document(parsed), separators=(",", ":"))
