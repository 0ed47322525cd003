"""One explicit transition table per state machine; every move is checked against it."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Generic, TypeVar

from handwork_payments.kit.errors import Conflict

S = TypeVar("S", bound=enum.StrEnum)


class StateMachine(Generic[S]):
    def __init__(self, name: str, transitions: Mapping[S, frozenset[S]]) -> None:
        self.name = name
        self.transitions = transitions

    def allows(self, current: S, target: S) -> bool:
        return target in self.transitions.get(current, frozenset())

    def check(self, current: S, target: S) -> None:
        if not self.allows(current, target):
            raise Conflict(f"A {current} {self.name} cannot become {target}")
