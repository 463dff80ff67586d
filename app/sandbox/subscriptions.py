"""Placeholder: the sandbox's subscriptions routes attach here."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()


class SubscriptionStore:
    """Graph subscriptions and their notification delivery (filled in with the routes)."""
