"""PayPal: `client` (HTTP, token, errors), `adapter` (the PaymentProvider), `orders`,
`payouts` and `vault` (PayPal resources read as our types; `vault`: Vault v3 setup and
payment tokens for recurring schedules), `events` (webhook verification and translation)."""

from handwork_payments.providers.paypal.adapter import PayPalProvider
from handwork_payments.providers.paypal.client import PayPalDeclinedError, PayPalError
from handwork_payments.providers.paypal.orders import paypal_value
from handwork_payments.providers.paypal.payouts import transfer_state

__all__ = ["PayPalDeclinedError", "PayPalError", "PayPalProvider", "paypal_value", "transfer_state"]
