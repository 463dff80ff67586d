"""Connections (bookingtime organisation ↔ Entra app) and their employees."""
