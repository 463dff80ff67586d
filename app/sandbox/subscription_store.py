"""Graph subscriptions and their notification delivery state (the routes: subscriptions.py)."""

from __future__ import annotations


class SubscriptionStore:
    """Filled in with the subscription routes."""
