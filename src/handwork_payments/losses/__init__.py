"""Platform losses: debts written off (disputes' losses are booked in disputes.losses)."""
