"""Placeholder until the admin endpoints land."""

from fastapi import APIRouter

router = APIRouter()
