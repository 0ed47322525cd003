"""The built-in Stripe and PayPal simulators, used whenever real credentials are not set, so
the service runs with no keys and no network.

- store.py: what both share: rows in `simulated_objects`, idempotency keys, fault
  injection (`inject_fault`), the keyed protocol calls, ids, amount and currency checks;
- stripe.py / stripe_objects.py: `SimulatedStripe` (PaymentProvider + ConnectProvider,
  test cards, 3-D Secure) and Stripe's JSON objects;
- paypal.py / paypal_objects.py: `SimulatedPayPal` (PaymentProvider + PayoutBatchProvider
  + ReauthorizingProvider, buyer approval) and PayPal's JSON objects;
- events.py: the webhook deliveries they send, signed.

Each flavour implements only the optional capabilities its provider has: code that asks
`isinstance(provider, PayoutBatchProvider)` gets the same answer from the simulator as from
the real adapter.
"""

from handwork_payments.providers.simulated.events import (
    PAYPAL_SIGNATURE_HEADER,
    paypal_simulator_signature,
)
from handwork_payments.providers.simulated.paypal import SimulatedPayPal
from handwork_payments.providers.simulated.store import (
    PAYOUT_ITEM,
    TRANSFER,
    SimulatedProvider,
    UnknownObjectError,
)
from handwork_payments.providers.simulated.stripe import SimulatedStripe
from handwork_payments.providers.simulated.stripe_objects import STRIPE_CONNECT_LINK_BASE

__all__ = [
    "PAYOUT_ITEM",
    "PAYPAL_SIGNATURE_HEADER",
    "STRIPE_CONNECT_LINK_BASE",
    "TRANSFER",
    "SimulatedPayPal",
    "SimulatedProvider",
    "SimulatedStripe",
    "UnknownObjectError",
    "paypal_simulator_signature",
]
