"""Placeholder: the sandbox's subscriptions routes attach here."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
