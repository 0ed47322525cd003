"""HANDWORK_ENV=production refuses simulated providers and generated secrets: one line on
stderr and a non-zero exit, before a database or a port is touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from handwork_payments.startup import StartupRefused, check_deployable, refusals
from tests.conftest import make_settings

LIVE = {
    "handwork_env": "production",
    "stripe_secret_key": "sk_live_x",
    "paypal_client_id": "id",
    "paypal_client_secret": "secret",
    "jwt_secret": "j" * 32,
}
CLI = Path(sys.executable).with_name("handwork-payments")


def production(**overrides: Any) -> list[str]:
    return refusals(make_settings("postgresql://unused/db", **{**LIVE, **overrides}))


def test_production_with_everything_set_starts() -> None:
    assert production() == []
    # One provider alone is fine: the other is disabled, not simulated.
    assert production(paypal_client_id=None) == []


def test_production_refuses_a_simulated_provider() -> None:
    assert production(stripe_secret_key=None, paypal_client_id=None) == [
        "stripe would be simulated (set its credentials, or leave the other provider's unset)",
        "paypal would be simulated (set its credentials, or leave the other provider's unset)",
    ]
    assert production(paypal_client_id=None, allow_simulated_providers=True) == [
        "paypal would be simulated (set its credentials, or leave the other provider's unset)"
    ]


@pytest.mark.parametrize("secret", [None, "", "j" * 31, "é" * 15])
def test_production_refuses_a_short_or_missing_jwt_secret(secret: str | None) -> None:
    assert production(jwt_secret=secret) == ["JWT_SECRET must be set, at least 32 bytes"]


def test_production_refuses_generated_metadata_keys() -> None:
    assert production(metadata_encryption_keys=None) == ["METADATA_ENCRYPTION_KEYS must be set"]


def test_development_refuses_nothing() -> None:
    settings = make_settings("postgresql://unused/db", jwt_secret=None)
    assert refusals(settings) == []
    check_deployable(settings)
    with pytest.raises(StartupRefused, match=r"^HANDWORK_ENV=production refuses to start: "):
        check_deployable(make_settings("postgresql://unused/db", handwork_env="production"))


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker"]])
def test_the_command_exits_with_one_line(tmp_path: Path, command: list[str]) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE_", "PAYPAL_", "JWT_", "METADATA_", "DATABASE_"))
    }
    env["HANDWORK_ENV"] = "production"
    done = subprocess.run(
        [str(CLI), *command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("HANDWORK_ENV=production refuses to start: stripe would be")
    assert "JWT_SECRET" in lines[0] and "METADATA_ENCRYPTION_KEYS" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def test_invalid_settings_are_one_line_too(tmp_path: Path) -> None:
    env = {**os.environ, "HANDWORK_ENV": "staging"}
    done = subprocess.run(
        [str(CLI), "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.startswith("invalid settings: HANDWORK_ENV: ")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_mistyped_encryption_key_is_named_in_one_line(tmp_path: Path) -> None:
    """A key that is not a Fernet key once crashed the first request that encrypted
    metadata with a traceback; now start-up names it (its position, never its value)."""
    good = "qEo2oYw0Ff7p3TzN2x0b1m3a9Y7tV4Xk8cQ5rW6uJ1s="
    env = {**os.environ, "METADATA_ENCRYPTION_KEYS": f"{good}, not-a-key-secret"}
    done = subprocess.run(
        [str(CLI), "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.startswith("invalid settings: METADATA_ENCRYPTION_KEYS: ")
    assert "key 2 is not a Fernet key" in done.stderr
    assert "not-a-key-secret" not in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
