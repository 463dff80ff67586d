"""Admin REST API under /api/v1: a thin adapter over the services, behind bearer tokens."""
