"""Alembic migrations for calbridge (date-prefixed revision files under versions/)."""
