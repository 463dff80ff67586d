"""Admin API tests."""
