"""Placeholder: the sandbox's delta routes attach here."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
