"""Placeholder: the sandbox's batch routes attach here."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
