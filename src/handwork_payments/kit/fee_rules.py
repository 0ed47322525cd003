"""Per-currency fee rules ("USD:2.9:30,JPY:3.6:0,*:2.9:30"): a percentage of the amount,
rounded half up to the minor unit, plus a fixed part in minor units. The simulators charge
providers' fees with them (settings SIMULATOR_*_FEES)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation


@dataclass(frozen=True)
class FeeRule:
    percent: Decimal
    fixed: int

    def fee(self, amount: int) -> int:
        variable = (Decimal(amount) * self.percent / 100).quantize(Decimal(1), ROUND_HALF_UP)
        return int(variable) + self.fixed


def parse(text: str) -> dict[str, FeeRule]:
    """ "CUR:percent:fixed" or "CUR:fixed" items; raises ValueError naming a bad one."""
    rules: dict[str, FeeRule] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split(":")
        try:
            if len(parts) == 2:
                rules[parts[0].upper()] = FeeRule(Decimal(0), int(parts[1]))
            elif len(parts) == 3:
                rules[parts[0].upper()] = FeeRule(Decimal(parts[1]), int(parts[2]))
            else:
                raise ValueError
        except (ValueError, InvalidOperation):
            raise ValueError(f"bad fee rule {item!r}: CUR:percent:fixed or CUR:fixed") from None
    return rules


def fee(text: str, amount: int, currency: str) -> int:
    """The fee the rules in `text` charge on `amount` of `currency` (0 with no rule)."""
    rules = parse(text)
    rule = rules.get(currency.upper()) or rules.get("*")
    return rule.fee(amount) if rule else 0
