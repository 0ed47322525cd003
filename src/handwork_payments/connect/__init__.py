"""Stripe Connect: onboarding workers onto Express accounts, and taking money back from
payouts already made to them (transfer reversals)."""
