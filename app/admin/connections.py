"""Placeholder until this router lands."""

from fastapi import APIRouter

router = APIRouter()
