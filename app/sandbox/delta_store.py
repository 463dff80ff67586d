"""Delta tokens handed out by calendarView/delta (the routes live in delta.py)."""

from __future__ import annotations


class DeltaStore:
    """Filled in with the delta routes."""
