"""Moved to `providers.paypal.events`; kept only for `providers/simulated.py`, which another
change rewrites (remove this file when that lands)."""

from handwork_payments.providers.paypal.events import lookup_hint, translate

__all__ = ["lookup_hint", "translate"]
