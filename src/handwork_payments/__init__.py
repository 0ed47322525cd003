"""Handwork Payments: escrow payments for services marketplaces."""
