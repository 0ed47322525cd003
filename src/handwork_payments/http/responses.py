"""The error answers a route declares (`responses=`), named for the kinds of route that
share them, so OpenAPI lists the same errors for the same kind of route everywhere."""

from __future__ import annotations

from handwork_payments.kit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PaymentDeclined,
    ProviderUnavailable,
    Unauthorized,
    UnparsableBody,
    Unprocessable,
    error_responses,
)

# A list of what the caller may see.
READ = error_responses(Unauthorized)
# A list only admins read.
ADMIN_READ = error_responses(Unauthorized, Forbidden)
# One object by its id, which a stranger is told does not exist.
READ_ONE = error_responses(Unauthorized, NotFound)
# One object by its id, for admins: read, or changed in a way no state refuses.
ADMIN_ONE = error_responses(Unauthorized, Forbidden, NotFound)
# One object by its id in a state that may refuse what is asked (409): mostly a state change.
ACTION = error_responses(Unauthorized, Forbidden, NotFound, Conflict)
# The same with a JSON body.
ACTION_WITH_BODY = error_responses(UnparsableBody, Unauthorized, Forbidden, NotFound, Conflict)
# The same with a body, when it calls a provider.
PROVIDER_ACTION = error_responses(
    UnparsableBody, Unauthorized, Forbidden, NotFound, Conflict, ProviderUnavailable
)
# A refund of an amount in the payment's currency (too precise: 422; over the maximum: 400).
REFUNDING = error_responses(
    BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Unprocessable, ProviderUnavailable
)
# A payer's payment at a provider, which may decline it.
PAYING = error_responses(
    BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PaymentDeclined, ProviderUnavailable
)
# A request to a provider about the platform's or a worker's own setup.
PROVIDER_SETUP = error_responses(BadRequest, Unauthorized, Forbidden, ProviderUnavailable)
