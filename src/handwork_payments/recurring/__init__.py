"""Recurring bookings (issue 13): schedules, their setup at the provider, and the job that
books and charges each occurrence off-session through the one payment path."""
