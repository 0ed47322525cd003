"""The PayPal double's Vault v3 (mixed into `PayPalDouble`): setup tokens, the payer's
approval (`approve_setup`, standing in for PayPal's agreement page), payment tokens made
from approved setup tokens, and orders paid with a payment token (`vault_id`), authorised
at creation with the payer absent. Validated against vault_payment_tokens_v3.json like
every other exchange with the double.

How it behaves like PayPal (Save PayPal without purchase, then Use payment tokens):
POST /v3/vault/setup-tokens answers PAYER_ACTION_REQUIRED with an `approve` link and a new
PayPal customer id; once the payer approved it is APPROVED; POST /v3/vault/payment-tokens
with `{"token": {"id", "type": "SETUP_TOKEN"}}` makes the payment token (the setup token is
then VAULTED and cannot make a second one, its token listed under its customer by
GET /v3/vault/payment-tokens?customer_id=); an order with `payment_source.paypal.vault_id`
and intent AUTHORIZE completes at once, its authorisation CREATED, or DENIED for a payer
marked `declines` (`set_declines`).
"""

from __future__ import annotations

import secrets
import string
from typing import Any

SETUP_TOKEN_EXCHANGED = "VAULTED"


def _token_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def _paypal_id(length: int) -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(length))


class VaultDouble:
    """Vault v3 state and operations; needs PayPalDouble's plumbing (`_fail`, `_link`,
    `lock`)."""

    setup_tokens: dict[str, dict[str, Any]]
    payment_tokens: dict[str, dict[str, Any]]
    # False: an order paid with a vault id is left APPROVED for the merchant to authorise
    # (PayPal's Orders guide allows both; the adapter must handle either).
    vault_authorizes_at_creation = True

    def _vault_routes(self) -> list[tuple[str, str, str, Any]]:
        return [
            ("POST", "/v3/vault/setup-tokens", "setup_tokens.create", self.op_setup_create),
            ("GET", "/v3/vault/setup-tokens/{id}", "setup_tokens.get", self.op_setup_get),
            ("POST", "/v3/vault/payment-tokens", "payment_tokens.create", self.op_token_create),
            ("GET", "/v3/vault/payment-tokens", "payment_tokens.list", self.op_token_list),
        ]

    # ------------------------------------------------------------------- test controls

    def approve_setup(self, setup_token_id: str, *, payer_id: str = "QYR5Z8XDVJNXQ") -> None:
        """The payer approves saving PayPal at the setup token's approve link."""
        with self.lock:
            token = self.setup_tokens[setup_token_id]
            assert token["status"] == "PAYER_ACTION_REQUIRED", token["status"]
            token["status"] = "APPROVED"
            token["payer"] = {"payer_id": payer_id, "email_address": "buyer@example.com"}

    def set_declines(self, vault_id: str, declines: bool) -> None:
        """Every later charge of this payment token is declined (or no longer)."""
        with self.lock:
            self.payment_tokens[vault_id]["declines"] = declines

    # ------------------------------------------------------------------- setup tokens

    def op_setup_create(self, ctx: Any) -> Any:
        paypal = (ctx.json.get("payment_source") or {}).get("paypal")
        if not isinstance(paypal, dict):
            raise self._fail(400, "MISSING_REQUIRED_PARAMETER", field_name="/payment_source")
        experience = paypal.get("experience_context") or {}
        if not (experience.get("return_url") and experience.get("cancel_url")):
            # PayPal needs both for the wallet's contingency (the approval) flow.
            raise self._fail(422, "MISSING_REQUIRED_PARAMETER")
        token_id = _paypal_id(17)
        self.setup_tokens[token_id] = {
            "id": token_id,
            "customer_id": _paypal_id(10),
            "status": "PAYER_ACTION_REQUIRED",
            "paypal": {k: paypal[k] for k in ("usage_type", "customer_type") if k in paypal},
            "experience": experience,
            "payer": None,
        }
        return self._reply(201, self._setup_token(self.setup_tokens[token_id]))

    def op_setup_get(self, ctx: Any) -> Any:
        token = self.setup_tokens.get(ctx.params["id"])
        if token is None:
            raise self._fail(404, "INVALID_RESOURCE_ID")
        return self._reply(200, self._setup_token(token))

    def _setup_token(self, token: dict[str, Any]) -> dict[str, Any]:
        links = [self._link(f"/v3/vault/setup-tokens/{token['id']}", "self")]
        if token["status"] == "PAYER_ACTION_REQUIRED":
            href = f"https://www.sandbox.paypal.com/agreements/approve?approval_session_id={token['id']}"
            links.append({"href": href, "rel": "approve", "method": "GET"})
        if token["status"] == "APPROVED":
            links.append(self._link("/v3/vault/payment-tokens", "confirm", "POST"))
        paypal = dict(token["paypal"])
        if token["payer"] is not None:
            paypal.update(token["payer"])
        return {
            "id": token["id"],
            "customer": {"id": token["customer_id"]},
            "status": token["status"],
            "payment_source": {"paypal": paypal},
            "links": links,
        }

    # ------------------------------------------------------------------- payment tokens

    def op_token_create(self, ctx: Any) -> Any:
        source = (ctx.json.get("payment_source") or {}).get("token") or {}
        if source.get("type") != "SETUP_TOKEN":
            raise self._fail(
                422, "INVALID_PARAMETER_VALUE", field_name="/payment_source/token/type"
            )
        setup = self.setup_tokens.get(str(source.get("id")))
        if setup is None:
            raise self._fail(404, "INVALID_RESOURCE_ID")
        if setup["status"] != "APPROVED":
            # Not approved by the payer yet, or made into a payment token already.
            raise self._fail(
                422,
                "SETUP_TOKEN_NOT_APPROVED" if setup["payer"] is None else "TOKEN_ALREADY_VAULTED",
            )
        setup["status"] = SETUP_TOKEN_EXCHANGED
        vault_id = _token_id()
        self.payment_tokens[vault_id] = {
            "id": vault_id,
            "customer_id": setup["customer_id"],
            "setup_token_id": setup["id"],
            "paypal": {**setup["paypal"], **setup["payer"]},
            "declines": False,
        }
        return self._reply(201, self._payment_token(self.payment_tokens[vault_id]))

    def op_token_list(self, ctx: Any) -> Any:
        """A customer's payment tokens (one page: the double's customers have few)."""
        customer_id = ctx.query.get("customer_id", "")
        tokens = [t for t in self.payment_tokens.values() if t["customer_id"] == customer_id]
        if not tokens:
            raise self._fail(404, "INVALID_RESOURCE_ID")
        return self._reply(
            200,
            {
                "customer": {"id": customer_id},
                "payment_tokens": [self._payment_token(t) for t in tokens],
                "total_items": len(tokens),
                "total_pages": 1,
                "links": [
                    self._link(f"/v3/vault/payment-tokens?customer_id={customer_id}", "self")
                ],
            },
        )

    def _payment_token(self, token: dict[str, Any]) -> dict[str, Any]:
        path = f"/v3/vault/payment-tokens/{token['id']}"
        return {
            "id": token["id"],
            "customer": {"id": token["customer_id"]},
            "payment_source": {"paypal": dict(token["paypal"])},
            "links": [self._link(path, "self"), self._link(path, "delete", "DELETE")],
        }

    # ------------------------------------------------------------------- vaulted orders

    def vaulted_payer(self, vault_id: str) -> dict[str, Any]:
        """The payment token an order is paid with (an unknown vault id: 404, as for any
        unknown resource here)."""
        token = self.payment_tokens.get(vault_id)
        if token is None:
            raise self._fail(404, "INVALID_RESOURCE_ID")
        return token

    def _reply(self, status: int, body: dict[str, Any]) -> Any:
        from tests.peers.paypal_double import Reply

        return Reply(status, body)
