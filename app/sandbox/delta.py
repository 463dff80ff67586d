"""Placeholder: the sandbox's delta routes attach here."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()


class DeltaStore:
    """Delta tokens handed out by calendarView/delta (filled in with the delta routes)."""
