"""payment_metadata encrypted at rest: MultiFernet, so keys can be rotated (newest first)."""

from __future__ import annotations

import json
import logging
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)


class UnreadableMetadata(Exception):
    """No key in METADATA_ENCRYPTION_KEYS opens it (the key that wrote it was dropped)."""


class MetadataCipher:
    def __init__(self, keys: str | None) -> None:
        if keys:
            fernets = [Fernet(k.strip()) for k in keys.split(",") if k.strip()]
            self.generated = False
        else:
            # A throwaway key: fine for the embedded development mode, fatal for production
            # (metadata written now is unreadable after a restart): `serve`'s banner warns,
            # production refuses it.
            fernets = [Fernet(Fernet.generate_key())]
            self.generated = True
            log.info(
                "METADATA_ENCRYPTION_KEYS is not set: payment_metadata is encrypted with a "
                "generated development key that is lost when the process stops"
            )
        self._newest = fernets[0]
        self._fernet = MultiFernet(fernets)

    def encrypt(self, value: dict[str, Any] | None) -> bytes | None:
        if value is None:
            return None
        return self._fernet.encrypt(json.dumps(value, sort_keys=True).encode())

    def decrypt(self, token: bytes | None) -> dict[str, Any] | None:
        if token is None:
            return None
        try:
            decoded: dict[str, Any] = json.loads(self._fernet.decrypt(token))
        except InvalidToken as exc:
            raise UnreadableMetadata("payment_metadata cannot be decrypted") from exc
        return decoded

    def rotate(self, token: bytes) -> bytes:
        """`token` encrypted with the newest key (UnreadableMetadata if no key opens it)."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise UnreadableMetadata("cannot be decrypted with any configured key") from exc

    def is_newest(self, token: bytes) -> bool:
        """Whether the newest key wrote it (rotation skips it: a rerun resumes)."""
        try:
            self._newest.decrypt(token)
        except InvalidToken:
            return False
        return True
