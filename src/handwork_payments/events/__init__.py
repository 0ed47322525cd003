"""Events to the marketplace: an outbox written in the transaction of each state change,
delivered at least once, signed, by a job (outbox.py, delivery.py)."""
