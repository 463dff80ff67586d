"""How a mailbox address is keyed, wherever calbridge stores or queues something per mailbox."""

from __future__ import annotations


def mailbox_key(mailbox: str) -> str:
    """Addresses are case-insensitive: one subscription, delta state and set of busy blocks, and
    one key for the jobs, per mailbox however it is spelled."""
    return mailbox.strip().casefold()
