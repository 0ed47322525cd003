"""The README documents every setting (a new one without a line there fails here)."""

from __future__ import annotations

from pathlib import Path

from handwork_payments.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_documented() -> None:
    text = README.read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in text]
    assert missing == []


def test_the_two_commands_come_first() -> None:
    head = "\n".join(README.read_text().splitlines()[:15])
    assert "make serve" in head and "make test" in head
