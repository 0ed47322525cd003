"""Reconciliation: our books against what the providers report, object by object."""
