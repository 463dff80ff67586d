"""Idempotent intake shared by the webhook sources: inbox rows and appointment snapshots."""
