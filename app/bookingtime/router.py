"""Placeholder until the intake lands."""

from fastapi import APIRouter

router = APIRouter()
